import type { Node } from '../../../config/reader';
import { attrValueToString, type AttrValue } from '../../../pdata/attributes';
import { goFloatString } from '../../../pdata/go-format';

// OTel -> Prometheus names, as the Collector translates them (prometheus/otlptranslator with the
// UnderscoreEscapingWithSuffixes strategy, which the Collector's prometheus exporter uses by
// default, and the OpenTelemetry spec's compatibility/prometheus_and_openmetrics.md):
//   - the name is split on every character outside [a-zA-Z0-9:] and joined with '_';
//   - the unit adds a suffix: s -> _seconds, ms -> _milliseconds, By -> _bytes, By/s ->
//     _bytes_per_second, ...; units in braces ({request}) add nothing; 1 adds nothing except
//     that a gauge with unit 1 gets _ratio;
//   - a monotonic sum gets _total (moved to the end if the name already has it);
//   - a namespace is prepended; a leading digit gets a '_' in front.
// Shared by the prometheus (scrape) and prometheusremotewrite exporters.

export type OtelMetricType = 'monotonic_counter' | 'non_monotonic_counter' | 'gauge' | 'histogram' | 'exponential_histogram' | 'summary';

const UNIT_MAP: Readonly<Record<string, string>> = {
  d: 'days',
  h: 'hours',
  min: 'minutes',
  s: 'seconds',
  ms: 'milliseconds',
  us: 'microseconds',
  ns: 'nanoseconds',
  By: 'bytes',
  KiBy: 'kibibytes',
  MiBy: 'mebibytes',
  GiBy: 'gibibytes',
  TiBy: 'tibibytes',
  KBy: 'kilobytes',
  MBy: 'megabytes',
  GBy: 'gigabytes',
  TBy: 'terabytes',
  m: 'meters',
  V: 'volts',
  A: 'amperes',
  J: 'joules',
  W: 'watts',
  g: 'grams',
  Cel: 'celsius',
  Hz: 'hertz',
  '1': '',
  '%': 'percent',
};

const PER_UNIT_MAP: Readonly<Record<string, string>> = {
  s: 'second',
  m: 'minute',
  h: 'hour',
  d: 'day',
  w: 'week',
  mo: 'month',
  y: 'year',
};

const isMetricChar = (c: string): boolean => /^[a-zA-Z0-9:]$/.test(c);
const INVALID_METRIC_CHARS = /[^a-zA-Z0-9:]+/;

function unitSuffixes(unit: string): { main: string; per: string } {
  const [mainRaw = '', perRaw] = splitOnce(unit, '/');
  let main = '';
  let per = '';
  const mainUnit = mainRaw.trim();
  if (mainUnit !== '' && !/[{}]/.test(mainUnit)) main = UNIT_MAP[mainUnit] ?? mainUnit;
  if (perRaw !== undefined && perRaw !== '') {
    const perUnit = perRaw.trim();
    if (perUnit !== '' && !/[{}]/.test(perUnit)) per = PER_UNIT_MAP[perUnit] ?? perUnit;
    if (per !== '') per = `per_${per}`;
  }
  return { main: cleanUpUnit(main), per: cleanUpUnit(per) };
}

function splitOnce(text: string, sep: string): [string, string | undefined] {
  const i = text.indexOf(sep);
  return i < 0 ? [text, undefined] : [text.slice(0, i), text.slice(i + 1)];
}

function cleanUpUnit(unit: string): string {
  let out = '';
  for (const c of unit) out += isMetricChar(c) ? c : '_';
  return out.replace(/_+/g, '_').replace(/^_/, '');
}

/**
 * The Prometheus metric name of an OTel metric; '' when nothing valid is left (the metric is then
 * dropped, as in the Collector).
 */
export function buildMetricName(name: string, unit: string, type: OtelMetricType, namespace: string, withSuffixes = true): string {
  let result: string;
  if (withSuffixes) {
    let tokens = name.split(INVALID_METRIC_CHARS).filter((t) => t.length > 0);
    let { main, per } = unitSuffixes(unit);
    if (tokens.includes(main)) main = '';
    if (per === 'per_') per = '';
    else {
      per = per.replace(/_$/, '');
      if (tokens.includes(per)) per = '';
    }
    if (per !== '') main = main.replace(/_$/, '');
    if (main !== '') tokens.push(main);
    if (per !== '') tokens.push(per);
    if (type === 'monotonic_counter') tokens = [...tokens.filter((t) => t !== 'total'), 'total'];
    if (unit === '1' && type === 'gauge') tokens = [...tokens.filter((t) => t !== 'ratio'), 'ratio'];
    if (namespace !== '') tokens.unshift(namespace);
    result = tokens.join('_');
    if (/^[0-9]/.test(result)) result = `_${result}`;
  } else {
    const base = name
      .split(/[^a-zA-Z0-9:_]+/)
      .filter((t) => t.length > 0)
      .join('_');
    result = namespace !== '' ? `${namespace}_${base}` : /^[0-9]/.test(base) ? `_${base}` : base;
  }
  if (result === '' || /^_+$/.test(result)) return '';
  return result;
}

/**
 * A Prometheus label name for an attribute key: every character outside [a-zA-Z0-9] becomes '_'
 * (runs are kept, as the Collector's prometheus exporter does), a leading digit gets `key_`.
 * undefined when the result would be empty or only underscores.
 */
export function buildLabelName(key: string): string | undefined {
  if (key === '') return undefined;
  let out = key.replace(/[^a-zA-Z0-9]/g, '_');
  if (/^[0-9]/.test(out)) out = `key_${out}`;
  if (/^_+$/.test(out)) return undefined;
  return out;
}

/** A namespace as the exporters use it: sanitized like a label name. */
export function normalizeNamespace(namespace: string): string {
  return namespace === '' ? '' : (buildLabelName(namespace) ?? '');
}

/** An OTLP AnyValue as protobufjs decodes it (longs as numbers, bytes as base64). */
export interface DecodedAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
  bytesValue?: string;
  arrayValue?: { values?: DecodedAnyValue[] };
  kvlistValue?: { values?: Array<{ key?: string; value?: DecodedAnyValue }> };
}

/** Text of an attribute value as the Collector's Value.AsString writes it. */
export function anyValueToString(value: DecodedAnyValue | undefined): string {
  if (!value) return '';
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return String(value.boolValue);
  if (value.intValue !== undefined) return String(value.intValue);
  // As pdata's AsString, which the Collector's exporters use for label values: "-0", "Infinity".
  if (value.doubleValue !== undefined) return goFloatString(value.doubleValue);
  if (value.bytesValue !== undefined) return value.bytesValue;
  return anyValueToJson(value);
}

/** JSON as Go's encoding/json writes pdata's AsRaw: map keys sorted, last duplicate key winning. */
function anyValueToJson(value: DecodedAnyValue | undefined): string {
  if (!value) return 'null';
  if (value.arrayValue) return `[${(value.arrayValue.values ?? []).map(anyValueToJson).join(',')}]`;
  if (value.kvlistValue) {
    const entries = new Map<string, string>();
    for (const kv of value.kvlistValue.values ?? []) entries.set(kv.key ?? '', anyValueToJson(kv.value));
    const keys = [...entries.keys()].sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${entries.get(k)!}`).join(',')}}`;
  }
  if (value.stringValue !== undefined) return JSON.stringify(value.stringValue);
  if (value.boolValue !== undefined) return String(value.boolValue);
  if (value.intValue !== undefined) return String(value.intValue);
  if (value.doubleValue !== undefined) return Number.isFinite(value.doubleValue) ? goFloatString(value.doubleValue) : 'null';
  if (value.bytesValue !== undefined) return JSON.stringify(value.bytesValue);
  return 'null';
}

export function formatDouble(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

export const SERVICE_NAME = 'service.name';
export const SERVICE_NAMESPACE = 'service.namespace';
export const SERVICE_INSTANCE_ID = 'service.instance.id';

/** `job` = service.namespace/service.name (or service.name), `instance` = service.instance.id. */
export function jobAndInstance(resource: ReadonlyMap<string, AttrValue>): { job: string | undefined; instance: string | undefined } {
  const name = resource.get(SERVICE_NAME);
  const namespace = resource.get(SERVICE_NAMESPACE);
  const instance = resource.get(SERVICE_INSTANCE_ID);
  let job: string | undefined;
  if (name !== undefined && name !== null) {
    const n = attrValueToString(name);
    job = namespace !== undefined && namespace !== null && attrValueToString(namespace) !== '' ? `${attrValueToString(namespace)}/${n}` : n;
  }
  return { job: job === '' ? undefined : job, instance: instance !== undefined && instance !== null && attrValueToString(instance) !== '' ? attrValueToString(instance) : undefined };
}

export type LabelPairs = Array<[string, string]>;

/**
 * Label pairs from attributes: names sanitized; keys that sanitize to the same name have their
 * values joined with ';' in the order of the original keys (the spec's rule); empty values are
 * left out (Prometheus treats an empty label as absent).
 */
export function attributesToLabels(entries: Iterable<readonly [string, string]>): LabelPairs {
  const byName = new Map<string, Array<[string, string]>>();
  for (const [key, value] of entries) {
    const name = buildLabelName(key);
    if (name === undefined) continue;
    let list = byName.get(name);
    if (!list) byName.set(name, (list = []));
    list.push([key, value]);
  }
  const out: LabelPairs = [];
  for (const [name, list] of byName) {
    const value = list.length === 1 ? list[0]![1] : list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map((e) => e[1]).join(';');
    if (value !== '') out.push([name, value]);
  }
  return out;
}

/** Label names a user may set (const_labels, external_labels). */
export function parseLabelMap(node: Node): LabelPairs {
  const out: LabelPairs = [];
  for (const [name, value] of Object.entries(node.stringMap())) {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name) || name.startsWith('__')) {
      node.child(name).report('not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)');
      continue;
    }
    if (value !== '') out.push([name, value]);
  }
  return out;
}
