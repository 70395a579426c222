import type { Component, Consumer, CreateSettings, ProcessorFactory } from '../../component/component';
import type { Node } from '../../config/reader';
import { itemNoun, type Batch, type ResourceBlock, type Signal } from '../../pdata/batch';
import { parseSelector, SelectorList, type Selector } from './selectors';

export interface FilterConfig {
  /** Absent means keep everything (then `drop` alone decides). */
  readonly keep: SelectorList | undefined;
  readonly drop: SelectorList;
}

export interface FilterDecision {
  readonly kept: boolean;
  /** The selector that decided, or undefined when the default decided. */
  readonly selector: Selector | undefined;
}

/** Keep if any `keep` selector matches (or there is no `keep`), then drop if any `drop` selector matches. */
export function decide(config: FilterConfig, block: ResourceBlock): FilterDecision {
  let keptBy: Selector | undefined;
  if (config.keep) {
    keptBy = config.keep.match(block.attributes);
    if (!keptBy) return { kept: false, selector: undefined };
  }
  const droppedBy = config.drop.isEmpty ? undefined : config.drop.match(block.attributes);
  if (droppedBy) return { kept: false, selector: droppedBy };
  return { kept: true, selector: keptBy };
}

export function parseSelectorList(node: Node): SelectorList | undefined {
  if (node.isAbsent) return undefined;
  const selectors: Selector[] = [];
  for (const item of node.list()) {
    const selector = parseSelector(item);
    if (selector) selectors.push(selector);
  }
  return new SelectorList(selectors);
}

export function parseFilterConfig(node: Node): FilterConfig {
  const at = node.struct(['keep', 'drop']);
  const keep = parseSelectorList(at('keep'));
  const drop = parseSelectorList(at('drop')) ?? new SelectorList([]);
  return { keep, drop };
}

export class FilterProcessor implements Component, Consumer {
  private readonly filtered: { inc(n: number): void };
  private rules: FilterConfig;

  constructor(
    settings: CreateSettings,
    config: FilterConfig,
    signal: Signal,
    private readonly next: Consumer,
  ) {
    this.rules = config;
    const noun = itemNoun(signal) === 'spans' ? 'spans' : 'datapoints';
    this.filtered = settings.telemetry.counter(
      `otelcol_processor_filter_${noun}_filtered`,
      `Number of ${noun === 'spans' ? 'spans' : 'data points'} dropped by the filter processor`,
      { processor: settings.id },
    );
  }

  get config(): FilterConfig {
    return this.rules;
  }

  /** Replaces the rules; takes effect from the next batch. */
  setConfig(config: FilterConfig): void {
    this.rules = config;
  }

  async start(): Promise<void> {}

  async shutdown(): Promise<void> {}

  async consume(batch: Batch): Promise<void> {
    const rules = this.rules;
    let kept: ResourceBlock[] | undefined;
    let dropped = 0;
    batch.resources.forEach((block, i) => {
      if (decide(rules, block).kept) {
        kept?.push(block);
      } else {
        kept ??= batch.resources.slice(0, i);
        dropped += block.itemCount;
      }
    });
    if (!kept) return this.next.consume(batch);
    if (dropped > 0) this.filtered.inc(dropped);
    if (kept.length === 0) return;
    return this.next.consume(batch.withResources(kept));
  }
}

export const filterFactory: ProcessorFactory<FilterConfig> = {
  type: 'filter',
  kind: 'processor',
  signals: ['traces', 'metrics'],
  parseConfig: parseFilterConfig,
  create: (settings, config, signal, next) => new FilterProcessor(settings, config, signal, next),
};
