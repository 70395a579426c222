import type { Component, Consumer, ConnectorFactory } from '../../component/component';
import type { Node } from '../../config/reader';
import type { Attributes } from '../../pdata/attributes';
import type { Batch, Signal } from '../../pdata/batch';

/** Joins pipelines of one signal: what one pipeline exports, the next receives unchanged. */
export class ForwardConnector implements Component, Consumer {
  constructor(private readonly next: Consumer) {}

  async start(): Promise<void> {}

  async shutdown(): Promise<void> {}

  consume(batch: Batch): Promise<void> {
    return this.next.consume(batch);
  }

  mayKeep(attributes: Attributes): boolean {
    return this.next.mayKeep?.(attributes) ?? true;
  }

  wouldRefuse(): string | undefined {
    return this.next.wouldRefuse?.();
  }
}

const SIGNALS: readonly Signal[] = ['traces', 'metrics'];

export const forwardConnectorFactory: ConnectorFactory<Record<string, never>> = {
  type: 'forward',
  kind: 'connector',
  routes: SIGNALS.map((signal) => [signal, signal] as const),
  parseConfig(node: Node) {
    node.object([]);
    return {};
  },
  create(_settings, _config, from, next) {
    const target = next.get(from);
    if (!target) throw new Error(`forward connector has no ${from} pipeline to forward to`);
    return new ForwardConnector(target);
  },
};
