import pino from 'pino';
import type { Consumer, CreateSettings } from '../../src/component/component';
import { ConfigIssues, ConfigValidationError, Node } from '../../src/config/reader';
import type { Batch } from '../../src/pdata/batch';
import { types } from '../../src/pdata/codec';
import { SelfTelemetry } from '../../src/service/telemetry';

// Small doubles for component tests: settings, a consumer that keeps what it gets, config parsing.

export function testSettings(id: string, telemetry = new SelfTelemetry()): CreateSettings {
  return { id, logger: pino({ level: 'silent' }), telemetry };
}

export class Capture implements Consumer {
  readonly batches: Batch[] = [];

  async consume(batch: Batch): Promise<void> {
    this.batches.push(batch);
  }

  /** Every ResourceMetrics received, decoded (longs as numbers, enums as numbers). */
  resourceMetrics(): DecodedResourceMetrics[] {
    return this.batches.flatMap((b) =>
      b.resources.map(
        (block) =>
          types.ResourceMetrics.toObject(types.ResourceMetrics.decode(block.bytes), { longs: Number, enums: Number, defaults: false }) as DecodedResourceMetrics,
      ),
    );
  }
}

export interface DecodedKeyValue {
  key: string;
  value: { stringValue?: string; intValue?: number; boolValue?: boolean; doubleValue?: number };
}

export interface DecodedResourceMetrics {
  resource?: { attributes?: DecodedKeyValue[] };
  scopeMetrics?: Array<{
    scope?: { name?: string };
    metrics?: Array<{
      name: string;
      unit?: string;
      sum?: { aggregationTemporality?: number; isMonotonic?: boolean; dataPoints?: Array<{ attributes?: DecodedKeyValue[]; asInt?: number; startTimeUnixNano?: number; timeUnixNano?: number }> };
      histogram?: {
        aggregationTemporality?: number;
        dataPoints?: Array<{ attributes?: DecodedKeyValue[]; count?: number; sum?: number; bucketCounts?: number[]; explicitBounds?: number[]; startTimeUnixNano?: number }>;
      };
    }>;
  }>;
}

/** Attributes as a plain record of their text values. */
export function attrs(list: DecodedKeyValue[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list ?? []) {
    const v = kv.value;
    out[kv.key] = String(v.stringValue ?? v.intValue ?? v.boolValue ?? v.doubleValue ?? '');
  }
  return out;
}

/** Parses a component config through its factory's parseConfig, throwing on problems. */
export function parseWith<C>(parse: (node: Node) => C, raw: unknown, path = 'component'): C {
  const issues = new ConfigIssues();
  const config = parse(new Node(raw, path, issues));
  if (issues.errors.length > 0) throw new ConfigValidationError(issues.errors);
  return config;
}

/** The problems parseConfig reports for `raw`. */
export function configErrors(parse: (node: Node) => unknown, raw: unknown, path = 'component'): string[] {
  const issues = new ConfigIssues();
  parse(new Node(raw, path, issues));
  return issues.errors;
}
