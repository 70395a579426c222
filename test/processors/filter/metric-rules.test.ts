import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ConditionSequence, DATAPOINT_CONTEXT, METRIC_CONTEXT, OttlRuntimeError, SCOPE_CONTEXT, compileCondition,
  type DataPointData, type ErrorMode, type MetricData, type MetricType, type OttlValue, type ResourceData, type ScopeData, type TelemetryItem,
} from '../../../src/ottl';
import { decodeToPlain, encodeFromOtlpJson, types } from '../../../src/pdata/codec';
import { SPAN } from '../../../src/pdata/fields';
import { parseRequest } from '../../../src/pdata/scan';
import { encodeRepeatedField } from '../../../src/pdata/wire';
import { filterMetricsBlock, type MetricRules } from '../../../src/processors/filter/metric-rules';
import { MAX_OTTL_DEPTH, WireAttributes, decodeOttlAnyValue, decodeOttlKeyValues, wireResource } from '../../../src/processors/filter/wire-items';
import { deepAnyValue } from '../../helpers/deep';

// filterMetricsBlock against the Collector's algorithm run over a full protobufjs decode of the
// same bytes (the reference below), by hand-made cases and over a generated corpus; plus the
// byte-level promises: untouched parts keep their bytes, unknown fields survive.

type Json = Record<string, unknown>;
type Attr = string | bigint | number | boolean | readonly Attr[] | { readonly [k: string]: Attr };

function anyValue(v: Attr): Json {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'bigint') return { intValue: v.toString() };
  if (typeof v === 'number') return { doubleValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { arrayValue: { values: (v as readonly Attr[]).map(anyValue) } };
  return { kvlistValue: { values: kvs(v as Record<string, Attr>) } };
}

function kvs(o: Record<string, Attr>): Json[] {
  return Object.entries(o).map(([key, value]) => ({ key, value: anyValue(value) }));
}

const DATA_KEY = ['', 'gauge', 'sum', 'histogram', 'exponentialHistogram', 'summary'] as const;

interface P { attrs?: Record<string, Attr>; value?: number | bigint; count?: bigint; sum?: number; flags?: number; start?: bigint }
interface M { name: string; type: MetricType; points?: P[]; temporality?: number; monotonic?: boolean; description?: string; unit?: string }
interface S { name?: string; version?: string; attrs?: Record<string, Attr>; metrics: M[] }

function pointJson(type: MetricType, p: P): Json {
  const out: Json = { attributes: kvs(p.attrs ?? {}), timeUnixNano: '1700000000000000000' };
  if (p.start !== undefined) out.startTimeUnixNano = p.start.toString();
  if (p.flags !== undefined) out.flags = p.flags;
  if (type === 1 || type === 2) {
    if (typeof p.value === 'number') out.asDouble = p.value;
    else if (typeof p.value === 'bigint') out.asInt = p.value.toString();
  } else {
    out.count = (p.count ?? 0n).toString();
    if (p.sum !== undefined) out.sum = p.sum;
    if (type === 3) {
      out.bucketCounts = ['1', '2'];
      out.explicitBounds = [0.5];
    }
    if (type === 4) out.positive = { offset: 1, bucketCounts: ['3'] };
    if (type === 5) out.quantileValues = [{ quantile: 0.5, value: 1.25 }];
  }
  return out;
}

function metricJson(m: M): Json {
  const out: Json = { name: m.name };
  if (m.description !== undefined) out.description = m.description;
  if (m.unit !== undefined) out.unit = m.unit;
  if (m.type === 0) return out;
  const body: Json = { dataPoints: (m.points ?? []).map((p) => pointJson(m.type, p)) };
  if (m.type >= 2 && m.type <= 4 && m.temporality !== undefined) body.aggregationTemporality = m.temporality;
  if (m.type === 2 && m.monotonic !== undefined) body.isMonotonic = m.monotonic;
  out[DATA_KEY[m.type]] = body;
  return out;
}

function resourceMetrics(resourceAttrs: Record<string, Attr>, scopes: S[]): Buffer {
  const json = {
    resource: { attributes: kvs(resourceAttrs) },
    scopeMetrics: scopes.map((s) => ({
      ...(s.name !== undefined || s.version !== undefined || s.attrs ? { scope: { name: s.name, version: s.version, attributes: kvs(s.attrs ?? {}) } } : {}),
      metrics: s.metrics.map(metricJson),
    })),
  };
  return Buffer.from(encodeFromOtlpJson(types.ResourceMetrics, json));
}

function rules(metric: readonly string[] | undefined, datapoint: readonly string[] | undefined, mode: ErrorMode = 'ignore', onError?: () => void, scope?: readonly string[]): MetricRules {
  return {
    ...(scope ? { scope: new ConditionSequence(scope.map((t) => compileCondition(t, SCOPE_CONTEXT)), mode, onError) } : {}),
    ...(metric ? { metric: new ConditionSequence(metric.map((t) => compileCondition(t, METRIC_CONTEXT)), mode, onError) } : {}),
    ...(datapoint ? { datapoint: new ConditionSequence(datapoint.map((t) => compileCondition(t, DATAPOINT_CONTEXT)), mode, onError) } : {}),
  };
}

// --- The reference: the Collector's processSkipExpression over fully decoded objects. ---

function ottlFromJson(v: Json | undefined): OttlValue {
  if (!v) return null;
  if ('stringValue' in v) return v.stringValue as string;
  if ('boolValue' in v) return v.boolValue as boolean;
  if ('intValue' in v) return BigInt(v.intValue as string);
  if ('doubleValue' in v) return Number(v.doubleValue);
  if ('bytesValue' in v) return Buffer.from(v.bytesValue as string, 'base64');
  if ('arrayValue' in v) return (((v.arrayValue as Json).values ?? []) as Json[]).map(ottlFromJson);
  if ('kvlistValue' in v) return mapFromJson((v.kvlistValue as Json).values as Json[] | undefined);
  return null;
}

function mapFromJson(list: Json[] | undefined): Map<string, OttlValue> {
  const m = new Map<string, OttlValue>();
  for (const kv of list ?? []) if (!m.has((kv.key as string | undefined) ?? '')) m.set((kv.key as string | undefined) ?? '', ottlFromJson(kv.value as Json | undefined));
  return m;
}

const i64 = (s: unknown): bigint => BigInt.asIntN(64, BigInt((s as string | undefined) ?? '0'));

function pointData(type: MetricType, p: Json): DataPointData {
  const number = type === 1 || type === 2;
  return {
    attributes: mapFromJson(p.attributes as Json[] | undefined),
    startTimeUnixNano: i64(p.startTimeUnixNano),
    timeUnixNano: i64(p.timeUnixNano),
    ...(number && p.asInt !== undefined ? { value: BigInt(p.asInt as string) } : {}),
    ...(number && p.asDouble !== undefined ? { value: Number(p.asDouble) } : {}),
    ...(!number ? { count: i64(p.count), sum: Number(p.sum ?? 0) } : {}),
    flags: Number(p.flags ?? 0),
  };
}

function typeOf(m: Json): MetricType {
  for (let t = 1; t <= 5; t++) if (m[DATA_KEY[t] as string] !== undefined) return t as MetricType;
  return 0;
}

/** Returns the filtered plain object, or null when the resource goes; throws what propagate throws. */
function reference(bytes: Uint8Array, r: MetricRules): { plain: Json | null; points: number } {
  const plain = decodeToPlain(types.ResourceMetrics, bytes);
  const resource: ResourceData = wireResource(bytes);
  let points = 0;
  const scopes = ((plain.scopeMetrics ?? []) as Json[]).filter((sm) => {
    if (!r.metric && !r.datapoint && !r.scope) {
      points += ((sm.metrics ?? []) as Json[]).reduce((n, m) => n + (((m[DATA_KEY[typeOf(m)] as string] as Json | undefined)?.dataPoints ?? []) as Json[]).length, 0);
      return true;
    }
    const sc = (sm.scope ?? {}) as Json;
    const scope: ScopeData = {
      name: (sc.name as string | undefined) ?? '', version: (sc.version as string | undefined) ?? '',
      attributes: mapFromJson(sc.attributes as Json[] | undefined), droppedAttributesCount: Number(sc.droppedAttributesCount ?? 0),
      schemaUrl: (sm.schemaUrl as string | undefined) ?? '',
    };
    if (r.scope?.eval({ resource, scope })) return false;
    const metrics = ((sm.metrics ?? []) as Json[]).filter((m) => {
      const type = typeOf(m);
      const body = type === 0 ? undefined : (m[DATA_KEY[type] as string] as Json);
      const dps = ((body?.dataPoints ?? []) as Json[]);
      const metric: MetricData = {
        name: (m.name as string | undefined) ?? '', description: (m.description as string | undefined) ?? '', unit: (m.unit as string | undefined) ?? '', type,
        ...(type >= 2 && type <= 4 ? { aggregationTemporality: Number(body?.aggregationTemporality ?? 0) } : {}),
        ...(type === 2 ? { isMonotonic: Boolean(body?.isMonotonic ?? false) } : {}),
        dataPoints: dps.map((p) => pointData(type, p)),
      };
      const item: TelemetryItem = { resource, scope, metric };
      if (r.metric?.eval(item)) return false;
      if (r.datapoint && type !== 0 && body) {
        body.dataPoints = dps.filter((p, i) => !r.datapoint?.eval({ ...item, dataPoint: metric.dataPoints?.[i] ?? pointData(type, p) }));
        if ((body.dataPoints as Json[]).length === 0) return false;
      }
      points += ((body?.dataPoints ?? []) as Json[]).length;
      return true;
    });
    sm.metrics = metrics;
    return metrics.length > 0;
  });
  if (scopes.length === 0) return { plain: null, points: 0 };
  plain.scopeMetrics = scopes;
  return { plain: decodeToPlain(types.ResourceMetrics, encodeFromOtlpJson(types.ResourceMetrics, plain)), points };
}

function run(bytes: Buffer, r: MetricRules): ReturnType<typeof filterMetricsBlock> {
  return filterMetricsBlock(bytes, wireResource(bytes), r);
}

/** Asserts filterMetricsBlock agrees with the reference; returns its answer. */
function agree(bytes: Buffer, r: MetricRules): ReturnType<typeof filterMetricsBlock> {
  let mine: ReturnType<typeof filterMetricsBlock>;
  let mineErr: unknown;
  try {
    mine = run(bytes, r);
  } catch (err) {
    mineErr = err;
  }
  let ref: ReturnType<typeof reference> | undefined;
  let refErr: unknown;
  try {
    ref = reference(bytes, r);
  } catch (err) {
    refErr = err;
  }
  assert.equal(mineErr === undefined, refErr === undefined, `errors differ: ${String(mineErr)} / ${String(refErr)}`);
  if (mineErr !== undefined || !ref) {
    assert.ok(mineErr instanceof OttlRuntimeError, String(mineErr));
    return undefined;
  }
  if (ref.plain === null) {
    assert.equal(mine, null);
    return mine;
  }
  assert.notEqual(mine, null, 'filterMetricsBlock dropped the resource, the reference keeps it');
  const out = mine === undefined ? bytes : (mine as { bytes: Uint8Array }).bytes;
  assert.deepEqual(decodeToPlain(types.ResourceMetrics, out), ref.plain);
  if (mine === undefined) {
    // Unchanged: the reference must not have removed anything either.
    assert.deepEqual(ref.plain, decodeToPlain(types.ResourceMetrics, bytes));
  } else {
    assert.equal((mine as { itemCount: number }).itemCount, ref.points);
    assert.notDeepEqual(ref.plain, decodeToPlain(types.ResourceMetrics, bytes), 'rewritten although nothing was removed');
  }
  return mine;
}

const idOf = (v: OttlValue | undefined): string => (typeof v === 'string' ? v : '?');

/** The surviving points as "metric:id". */
function survivors(bytes: Uint8Array): string[] {
  const plain = decodeToPlain(types.ResourceMetrics, bytes);
  return ((plain.scopeMetrics ?? []) as Json[]).flatMap((sm) => ((sm.metrics ?? []) as Json[]).flatMap((m) => {
    const body = m[DATA_KEY[typeOf(m)] as string] as Json | undefined;
    if (!body) return [`${m.name as string}:-`];
    return ((body.dataPoints ?? []) as Json[]).map((p) => `${m.name as string}:${idOf(mapFromJson(p.attributes as Json[]).get('id'))}`);
  }));
}

const EVERY_TYPE: S[] = [{
  name: 'obi', version: '1.0',
  metrics: [
    { name: 'g', type: 1, points: [{ attrs: { id: 'g1', route: '/a' }, value: 1.5 }, { attrs: { id: 'g2', route: '/b' }, value: 2n }] },
    { name: 's', type: 2, temporality: 2, monotonic: true, points: [{ attrs: { id: 's1', route: '/a' }, value: 10n }, { attrs: { id: 's2' }, value: 0.5 }] },
    { name: 'h', type: 3, temporality: 2, points: [{ attrs: { id: 'h1', route: '/a' }, count: 3n, sum: 1.5 }, { attrs: { id: 'h2', route: '/b' }, count: 1n }] },
    { name: 'e', type: 4, temporality: 1, points: [{ attrs: { id: 'e1', route: '/a' }, count: 5n, sum: 2 }, { attrs: { id: 'e2', route: '/c' }, count: 7n }] },
    { name: 'q', type: 5, points: [{ attrs: { id: 'q1', route: '/a' }, count: 4n, sum: 8 }, { attrs: { id: 'q2', route: '/b' }, count: 2n, sum: 1 }] },
  ],
}];

test('datapoint conditions remove points of every metric type and keep the rest', () => {
  const bytes = resourceMetrics({ 'service.name': 'x' }, EVERY_TYPE);
  const out = agree(bytes, rules(undefined, ['attributes["route"] == "/a"']));
  assert.ok(out);
  assert.deepEqual(survivors(out.bytes), ['g:g2', 's:s2', 'h:h2', 'e:e2', 'q:q2']);
  assert.equal(out.itemCount, 5);
  // Values: int vs double, counts and sums per type.
  const byValue = agree(bytes, rules(undefined, ['value_double > 1.0', 'value_int == 10', 'count >= 5', 'sum == 1.0']));
  assert.ok(byValue);
  assert.deepEqual(survivors(byValue.bytes), ['g:g2', 's:s2', 'h:h1', 'h:h2', 'q:q1']);
});

test('a metric, scope or resource left empty is removed; nothing removed is undefined', () => {
  const bytes = resourceMetrics({ 'service.name': 'x' }, [...EVERY_TYPE, { name: 'other', metrics: [{ name: 'lonely', type: 1, points: [{ attrs: { id: 'l1' }, value: 1n }] }] }]);
  const noMetric = agree(bytes, rules(undefined, ['metric.name == "h"']));
  assert.ok(noMetric);
  assert.ok(!survivors(noMetric.bytes).some((s) => s.startsWith('h:')));
  const noScope = agree(bytes, rules(['name == "lonely"'], undefined));
  assert.ok(noScope);
  assert.equal((decodeToPlain(types.ResourceMetrics, noScope.bytes).scopeMetrics as unknown[]).length, 1);
  assert.equal(agree(bytes, rules(['name != ""'], undefined)), null);
  assert.equal(agree(bytes, rules(undefined, ['true'])), null);
  assert.equal(agree(bytes, rules(['name == "nope"'], ['attributes["id"] == "none"'])), undefined);
  assert.equal(agree(bytes, rules(undefined, undefined)), undefined);
});

test('the Collector semantics at the edges: empty metrics, empty scopes, no scopes at all', () => {
  // A metric without data: datapoint conditions leave it, metric conditions see type NONE.
  const empty = resourceMetrics({}, [{ metrics: [{ name: 'nodata', type: 0 }, { name: 'nopoints', type: 1, points: [] }, { name: 'g', type: 1, points: [{ attrs: { id: 'a' }, value: 1n }] }] }]);
  const dp = agree(empty, rules(undefined, ['attributes["id"] == "zzz"']));
  assert.ok(dp);
  assert.deepEqual(survivors(dp.bytes), ['nodata:-', 'g:a']); // a metric with no points at all goes
  assert.equal(agree(empty, rules(['name == "zzz"'], undefined)), undefined); // metric conditions alone keep it
  const none = agree(empty, rules(['type == METRIC_DATA_TYPE_NONE'], undefined));
  assert.ok(none);
  assert.deepEqual(survivors(none.bytes), ['g:a']);
  // HasAttrOnDatapoint on a metric without data is an error: ignore keeps the metric, propagate throws.
  let errors = 0;
  assert.equal(agree(empty, rules(['HasAttrKeyOnDatapoint("id")'], undefined, 'ignore', () => errors++))?.itemCount, 0);
  assert.ok(errors > 0);
  assert.throws(() => run(empty, rules(['HasAttrKeyOnDatapoint("id")'], undefined, 'propagate')), OttlRuntimeError);
  // A scope without metrics goes once any metric or datapoint condition is set; a resource without scopes goes.
  const emptyScope = resourceMetrics({}, [{ name: 'a', metrics: [] }, { name: 'b', metrics: [{ name: 'g', type: 1, points: [{ value: 1n }] }] }]);
  assert.equal((decodeToPlain(types.ResourceMetrics, agree(emptyScope, rules(['name == "x"'], undefined))?.bytes ?? new Uint8Array()).scopeMetrics as unknown[]).length, 1);
  assert.equal(agree(emptyScope, rules(undefined, undefined)), undefined);
  assert.equal(agree(resourceMetrics({ a: 'b' }, []), rules(undefined, ['true'])), null);
  assert.equal(agree(resourceMetrics({ a: 'b' }, []), rules(undefined, undefined)), null);
});

test('metric-context fields and HasAttr* see the metric before its points are filtered', () => {
  const bytes = resourceMetrics({ 'service.name': 'svc' }, [{ name: 'obi', version: '2', attrs: { team: 'x' }, metrics: [
    { name: 'a', type: 2, temporality: 1, monotonic: false, description: 'd', unit: 's', points: [{ attrs: { id: 'a1', code: 200n } }] },
    { name: 'b', type: 3, temporality: 2, points: [{ attrs: { id: 'b1', code: '200' }, count: 1n }] },
    { name: 'c', type: 1, points: [{ attrs: { id: 'c1', code: 200.0 }, value: 3n }] },
  ] }]);
  const cases: [string[], string[]][] = [
    [['HasAttrOnDatapoint("code", "200")'], ['a:a1', 'c:c1']],
    [['HasAttrKeyOnDatapoint("code")'], []],
    [['aggregation_temporality == AGGREGATION_TEMPORALITY_DELTA or is_monotonic == true'], ['b:b1', 'c:c1']],
    [['type == METRIC_DATA_TYPE_SUM'], ['b:b1', 'c:c1']],
    [['description == "d" and unit == "s"'], ['b:b1', 'c:c1']],
    [['instrumentation_scope.version == "2" and scope.attributes["team"] == "x" and name == "c"'], ['a:a1', 'b:b1']],
    [['resource.attributes["service.name"] == "svc" and is_monotonic == nil'], ['a:a1']],
  ];
  for (const [cond, left] of cases) {
    const out = agree(bytes, rules(cond, undefined));
    assert.deepEqual(out ? survivors(out.bytes) : [], left, cond.join());
  }
  // int vs double attribute values stay distinct types, as in OTTL.
  for (const [cond, left] of [
    [['attributes["code"] == 200'], ['b:b1']],
    [['attributes["code"] == 200.0'], ['b:b1']],
    [['IsInt(attributes["code"])'], ['b:b1', 'c:c1']],
    [['IsDouble(attributes["code"])'], ['a:a1', 'b:b1']],
    [['attributes["code"] == "200"'], ['a:a1', 'c:c1']],
    [['value_int == 3 and metric.name == "c"'], ['a:a1', 'b:b1']],
    [['value_double == nil', 'attributes["missing"] != nil'], ['a:a1', 'c:c1']],
  ] as [string[], string[]][]) {
    const out = agree(bytes, rules(undefined, cond));
    assert.deepEqual(out ? survivors(out.bytes) : [], left, cond.join());
  }
});

test('error modes: propagate throws, ignore reports and counts the condition false, silent says nothing', () => {
  const bytes = resourceMetrics({}, EVERY_TYPE);
  const failing = ['attributes["route"][0] == "x"', 'attributes["id"] == "g1"']; // indexing a string errors on points with a route
  assert.throws(() => run(bytes, rules(undefined, failing, 'propagate')), /failed to eval condition/);
  let reported = 0;
  assert.ok(run(bytes, rules(undefined, failing, 'ignore', () => reported++)));
  assert.equal(reported, 9); // every point with a route
  const ignored = agree(bytes, rules(undefined, failing, 'ignore'));
  assert.ok(ignored);
  assert.ok(!survivors(ignored.bytes).includes('g:g1'));
  assert.deepEqual(survivors(agree(bytes, rules(undefined, failing, 'silent', () => assert.fail('silent reports')))?.bytes ?? new Uint8Array()), survivors(ignored.bytes));
});

// --- Byte-level promises, on hand-written bytes. ---

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}
const len = (field: number, ...payload: (Buffer | number[])[]): Buffer => {
  const body = Buffer.concat(payload.map((p) => Buffer.from(p)));
  return Buffer.concat([Buffer.from([...varint(field * 8 + 2), ...varint(body.length)]), body]);
};
const str = (field: number, s: string): Buffer => len(field, Buffer.from(s));
/** A KeyValue's payload (wrap it in the attributes field). */
const kv = (key: string, value: string): Buffer => Buffer.concat([str(1, key), len(2, str(1, value))]);
/** Unknown fields of every wire type. */
const UNKNOWN = Buffer.from([...varint(99 * 8), 5, ...varint(98 * 8 + 1), 1, 2, 3, 4, 5, 6, 7, 8, ...varint(97 * 8 + 5), 1, 2, 3, 4, ...varint(96 * 8 + 2), 2, 0xab, 0xcd]);

test('unknown fields and untouched messages keep their bytes; only what lost a point is re-framed', () => {
  const point = (id: string): Buffer => len(1, UNKNOWN, len(7, kv('id', id)), Buffer.from([4 * 8 + 1, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f])); // as_double 1.0
  const gauge = len(5, point('a'), UNKNOWN, point('b'), point('c'));
  const metricG = len(2, str(1, 'g'), UNKNOWN, gauge, str(3, 'unit'));
  const metricH = len(2, str(1, 'h'), len(9, len(1, len(9, kv('id', 'h')), Buffer.from([4 * 8 + 1, 1, 0, 0, 0, 0, 0, 0, 0])), Buffer.from([2 * 8, 2])));
  const scope1 = len(2, len(1, str(1, 'obi'), UNKNOWN), metricG, UNKNOWN, metricH, str(3, 'https://schema'));
  const scope2 = len(2, str(3, 'before-scope'), len(2, str(1, 'untouched'), len(5, point('z'))), len(1, str(1, 'late-scope')));
  const block = Buffer.concat([len(1, len(1, kv('service.name', 'x')), UNKNOWN), UNKNOWN, scope1, scope2, str(3, 'https://res')]);
  // The receiver accepts it, and counts what filterMetricsBlock counts.
  const parsed = parseRequest('metrics', encodeRepeatedField(1, [block]));
  assert.equal(parsed.batch.resources[0]?.itemCount, 5);
  const out = run(block, rules(undefined, ['attributes["id"] == "b"']));
  assert.ok(out);
  const expected = Buffer.concat([
    len(1, len(1, kv('service.name', 'x')), UNKNOWN), UNKNOWN,
    len(2, len(1, str(1, 'obi'), UNKNOWN), len(2, str(1, 'g'), UNKNOWN, len(5, point('a'), UNKNOWN, point('c')), str(3, 'unit')), UNKNOWN, metricH, str(3, 'https://schema')),
    scope2, str(3, 'https://res'),
  ]);
  assert.ok(Buffer.from(out.bytes).equals(expected), `got ${Buffer.from(out.bytes).toString('hex')}\nexp ${expected.toString('hex')}`);
  assert.equal(out.itemCount, 4);
  // A scope written after its metrics still counts; a metric removed whole leaves its neighbours' bytes.
  const byScope = run(block, rules(['instrumentation_scope.name == "late-scope"', 'name == "h"'], undefined));
  assert.ok(byScope);
  assert.ok(Buffer.from(byScope.bytes).equals(Buffer.concat([
    len(1, len(1, kv('service.name', 'x')), UNKNOWN), UNKNOWN,
    len(2, len(1, str(1, 'obi'), UNKNOWN), metricG, UNKNOWN, str(3, 'https://schema')), str(3, 'https://res'),
  ])));
  assert.equal(byScope.itemCount, 3);
  // Nothing matches: the same bytes go on (undefined), so the caller forwards the original view.
  assert.equal(run(block, rules(['name == "none"'], ['attributes["id"] == "none"'])), undefined);
  // A plain Uint8Array (not a Buffer) is read the same way.
  const copy = new Uint8Array(block);
  assert.deepEqual(filterMetricsBlock(copy, wireResource(copy), rules(undefined, ['attributes["id"] == "b"']))?.bytes, out.bytes);
});

test('the last data field decides the type and holds the points (as pdata decodes), earlier ones ride along', () => {
  const point = (id: string, asInt: number): Buffer => len(1, len(7, kv('id', id)), Buffer.from([6 * 8 + 1, asInt, 0, 0, 0, 0, 0, 0, 0]));
  const stale = len(5, point('stale', 1));
  const metric = len(2, str(1, 'm'), stale, len(7, point('x', 1), point('y', 2), Buffer.from([3 * 8, 1])));
  const block = Buffer.concat([len(1), len(2, metric)]);
  const byType = run(block, rules(['type == METRIC_DATA_TYPE_GAUGE'], undefined));
  assert.equal(byType, undefined);
  const out = run(block, rules(undefined, ['value_int == 1']));
  assert.ok(out);
  assert.ok(Buffer.from(out.bytes).equals(Buffer.concat([len(1), len(2, len(2, str(1, 'm'), stale, len(7, point('y', 2), Buffer.from([3 * 8, 1]))))])));
  assert.equal(out.itemCount, 2); // counted as the receiver counts: every data field's points
  assert.equal(run(block, rules(['is_monotonic == true'], undefined)), null);
});

test('attribute values nested 20,000 levels deep are read as the span path reads them: MAX_OTTL_DEPTH levels, then empty', () => {
  for (const kind of ['kvlist', 'array'] as const) {
    const deep = deepAnyValue(kind, 20_000);
    const point = len(1, len(7, str(1, 'deep'), len(2, deep)), len(7, kv('id', 'p')));
    const block = Buffer.concat([len(1), len(2, len(2, str(1, 'm'), len(5, point, len(1, len(7, kv('id', 'q'))))))]);
    const out = run(block, rules(undefined, ['attributes["deep"] != nil and attributes["id"] == "p"']));
    assert.ok(out);
    assert.equal(out.itemCount, 1);
    const v = decodeOttlAnyValue(deep, 0, deep.length);
    let depth = 0;
    let cur: OttlValue = v;
    while (cur !== null && typeof cur === 'object' && !(cur instanceof Uint8Array)) {
      cur = cur instanceof Map ? ((cur as ReadonlyMap<string, OttlValue>).get('k') ?? null) : ((cur as readonly OttlValue[])[0] ?? null);
      depth++;
    }
    // MAX_OTTL_DEPTH levels with content, then an empty list / map.
    assert.equal(depth, MAX_OTTL_DEPTH + 1);
    assert.equal(cur, null);
  }
});

test('WireAttributes: one key read alone answers as the whole map decoded does', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom('a', 'b', 'é', ''), fc.option(attrValue, { nil: undefined })), { maxLength: 6 }), fc.constantFrom('a', 'b', 'é', '', 'zz'), (entries, key) => {
      // KeyValues by hand: duplicate keys, a missing value, and the key written after the value.
      const body = Buffer.concat(entries.map(([k, v], i) => {
        const value = v === undefined ? Buffer.alloc(0) : len(2, Buffer.from(types.ResourceMetrics.lookupType('opentelemetry.proto.common.v1.AnyValue').encode(anyValue(v)).finish()));
        return len(9, ...(i % 2 === 0 ? [str(1, k), value] : [value, str(1, k)]));
      }));
      const full = decodeOttlKeyValues(body, 0, body.length, SPAN.attributes);
      const lazy = (): WireAttributes => new WireAttributes(body, 0, body.length, SPAN.attributes);
      assert.deepEqual(lazy().get(key), full.get(key));
      assert.equal(lazy().has(key), full.has(key));
      const read = lazy();
      read.get(key);
      assert.equal(read.size, full.size);
      assert.deepEqual([...read], [...full]);
      assert.deepEqual([...lazy().keys()], [...full.keys()]);
      assert.deepEqual([...lazy().values()], [...full.values()]);
      assert.ok(lazy() instanceof Map);
    }),
    { numRuns: 300, seed: 7 },
  );
});

// --- Equivalence over a generated corpus. ---

const METRIC_CONDITIONS = [
  'name == "a"', 'type == METRIC_DATA_TYPE_SUM', 'HasAttrKeyOnDatapoint("route")', 'HasAttrOnDatapoint("route", "/a")',
  'aggregation_temporality == AGGREGATION_TEMPORALITY_DELTA', 'is_monotonic == true', 'instrumentation_scope.name == "s1"',
  'description == "d" or unit == "s"', 'resource.attributes["service.name"] == "a"', 'type == METRIC_DATA_TYPE_NONE',
  'scope.attributes["k"] == 1', 'HasAttrOnDatapoint("code", "200")',
];
const DATAPOINT_CONDITIONS = [
  'attributes["route"] == "/a"', 'value_double > 1.0', 'value_int == 2', 'count > 2', 'sum < 1.5', 'flags == FLAG_NO_RECORDED_VALUE',
  'attributes["code"] == 200', 'attributes["code"] == 200.0', 'value_double == nil', 'metric.name == "b"', 'start_time_unix_nano > 5',
  'Int(attributes["code"]) > 100', 'attributes["route"][1] == "x"', 'scope.version == "1"', 'attributes["nested"]["k"] == true',
  'attributes == {}', 'Len(attributes) > 2', 'metric.type == METRIC_DATA_TYPE_HISTOGRAM and sum == nil',
];

const SCOPE_CONDITIONS = ['name == "s1"', 'version == "2" and resource.attributes["host.name"] != nil', 'attributes["k"] == 1', 'attributes["k"][0] == 1'];

const attrValue: fc.Arbitrary<Attr> = fc.oneof(
  fc.constantFrom('/a', '/b', '200', ''), fc.constantFrom(200n, 2n, -1n, 9007199254740993n), fc.constantFrom(200, 1.5, -0, 2),
  fc.boolean(), fc.constant({ k: true }), fc.constant(['x', 1n]),
);
const attrs = fc.dictionary(fc.constantFrom('route', 'code', 'id', 'nested', 'k'), attrValue, { maxKeys: 3 });
const pointArb: fc.Arbitrary<P> = fc.record({
  attrs,
  value: fc.option(fc.oneof(fc.constantFrom(0.5, 1.5, 2, -3.25), fc.constantFrom(0n, 2n, 5n)), { nil: undefined }),
  count: fc.constantFrom(0n, 1n, 3n, 18446744073709551615n),
  sum: fc.option(fc.constantFrom(0, 1, 2.5), { nil: undefined }),
  flags: fc.option(fc.constantFrom(0, 1), { nil: undefined }),
  start: fc.option(fc.constantFrom(0n, 3n, 100n), { nil: undefined }),
}, { requiredKeys: ['attrs', 'count'] });
const metricArb: fc.Arbitrary<M> = fc.record({
  name: fc.constantFrom('a', 'b', 'c'),
  type: fc.constantFrom<MetricType>(0, 1, 2, 3, 4, 5),
  points: fc.array(pointArb, { maxLength: 4 }),
  temporality: fc.option(fc.constantFrom(0, 1, 2), { nil: undefined }),
  monotonic: fc.option(fc.boolean(), { nil: undefined }),
  description: fc.option(fc.constantFrom('d', 'x'), { nil: undefined }),
  unit: fc.option(fc.constantFrom('s', 'By'), { nil: undefined }),
}, { requiredKeys: ['name', 'type'] });
const scopeArb: fc.Arbitrary<S> = fc.record({
  name: fc.option(fc.constantFrom('s1', 's2'), { nil: undefined }),
  version: fc.option(fc.constantFrom('1', '2'), { nil: undefined }),
  attrs: fc.option(fc.dictionary(fc.constantFrom('k'), fc.constantFrom<Attr>(1n, 1, 'v')), { nil: undefined }),
  metrics: fc.array(metricArb, { maxLength: 4 }),
}, { requiredKeys: ['metrics'] });

test('equivalence with a full decode, filter and encode over a generated corpus', () => {
  let changed = 0;
  let dropped = 0;
  let untouched = 0;
  fc.assert(
    fc.property(
      fc.dictionary(fc.constantFrom('service.name', 'host.name'), fc.constantFrom<Attr>('a', 'b'), { maxKeys: 2 }),
      fc.array(scopeArb, { maxLength: 3 }),
      fc.option(fc.subarray(METRIC_CONDITIONS, { minLength: 0, maxLength: 2 }), { nil: undefined }),
      fc.option(fc.subarray(DATAPOINT_CONDITIONS, { minLength: 0, maxLength: 3 }), { nil: undefined }),
      fc.constantFrom<ErrorMode>('ignore', 'ignore', 'silent', 'propagate'),
      fc.option(fc.subarray(SCOPE_CONDITIONS, { minLength: 0, maxLength: 2 }), { nil: undefined, freq: 3 }),
      (resourceAttrs, scopes, metric, datapoint, mode, scope) => {
        const bytes = resourceMetrics(resourceAttrs, scopes);
        const out = agree(bytes, rules(metric, datapoint, mode, undefined, scope));
        if (out === null) dropped++;
        else if (out === undefined) untouched++;
        else changed++;
      },
    ),
    { numRuns: 600, seed: Number(process.env.FC_SEED ?? 20261202) },
  );
  // Guard against a vacuous pass: every outcome occurs often.
  assert.ok(changed > 50 && dropped > 50 && untouched > 50, `changed ${changed}, dropped ${dropped}, untouched ${untouched}`);
});

test('odd but valid input (whatever the receiver accepts) never throws and re-parses with the count it reports', () => {
  const base = resourceMetrics({ 'service.name': 'x' }, EVERY_TYPE);
  const ruleSets = [
    rules(undefined, ['attributes["route"] == "/a"', 'value_int == 2', 'count > 4']),
    rules(['name == "h"', 'HasAttrOnDatapoint("route", "/b")', 'instrumentation_scope.name == "obi"'], ['Len(attributes) > 1', 'flags == 1']),
  ];
  let accepted = 0;
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.nat(255)), { minLength: 1, maxLength: 3 }), (edits) => {
      const mutant = Buffer.from(base);
      for (const [at, value] of edits) mutant[at] = value;
      let block: Uint8Array;
      try {
        const parsed = parseRequest('metrics', encodeRepeatedField(1, [mutant]));
        const only = parsed.batch.resources[0];
        if (!only || parsed.batch.resources.length !== 1) return;
        block = only.bytes;
      } catch {
        return; // the receiver refuses it: it never reaches a processor
      }
      accepted++;
      for (const r of ruleSets) {
        const out = filterMetricsBlock(block, wireResource(block), r);
        if (!out) continue;
        const again = parseRequest('metrics', encodeRepeatedField(1, [out.bytes]));
        assert.equal(again.rejected, 0);
        assert.equal(again.batch.itemCount, out.itemCount);
      }
    }),
    { numRuns: 3000, seed: 11 },
  );
  assert.ok(accepted > 300, `accepted ${accepted}`);
});
