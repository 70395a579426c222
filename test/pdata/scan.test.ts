import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import type { AttrValue } from '../../src/pdata/attributes';
import type { Signal } from '../../src/pdata/batch';
import { types } from '../../src/pdata/codec';
import { checkDeferredBlock, parseRequest, type ParsedRequest } from '../../src/pdata/scan';
import { WireFormatError } from '../../src/pdata/wire';
import { dockerInstance, encodeTraces, hostInstance, k8sInstance, obiResourceSpans, obiSpan, type ObiInstance } from '../helpers/obi';
import { seededRandom } from '../helpers/random';

// parseRequest against a full protobufjs decode: for every input, the resource attributes and item
// counts it decides on must be those of the decoded message, and the kept bytes must be the input's.

// ---------------------------------------------------------------------------------------------
// A raw protobuf writer, for inputs protobufjs would not produce (unknown fields, unpacked
// repeated fields, malformed bytes).

type Bytes = Uint8Array;

function varint(value: number | bigint): Buffer {
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}
const cat = (...parts: Bytes[]): Buffer => Buffer.concat(parts);
const key = (field: number, wireType: number): Buffer => varint(field * 8 + wireType);
const len = (field: number, ...payload: Bytes[]): Buffer => {
  const p = cat(...payload);
  return cat(key(field, 2), varint(p.length), p);
};
const str = (field: number, s: string): Buffer => len(field, Buffer.from(s, 'utf8'));
const vint = (field: number, v: number | bigint): Buffer => cat(key(field, 0), varint(v));
const fixed64 = (field: number, v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return cat(key(field, 1), b);
};
const double = (field: number, v: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return cat(key(field, 1), b);
};
const fixed32 = (field: number, v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return cat(key(field, 5), b);
};
const packedFixed64 = (field: number, values: bigint[]): Buffer => {
  const b = Buffer.alloc(8 * values.length);
  values.forEach((v, i) => b.writeBigUInt64LE(v, 8 * i));
  return len(field, b);
};
const packedDouble = (field: number, values: number[]): Buffer => {
  const b = Buffer.alloc(8 * values.length);
  values.forEach((v, i) => b.writeDoubleLE(v, 8 * i));
  return len(field, b);
};

/** One field of every wire type, at field numbers no OTLP message uses. */
const unknownFields = (base: number): Buffer =>
  cat(vint(base, 300), len(base + 1, Buffer.from('opaque')), fixed64(base + 2, 0x0102030405060708n), fixed32(base + 3, 7));

// AnyValue payloads.
const anyStr = (v: string): Buffer => str(1, v);
const anyBool = (v: boolean): Buffer => vint(2, v ? 1 : 0);
const anyInt = (v: number | bigint): Buffer => vint(3, v);
const anyDouble = (v: number): Buffer => double(4, v);
const anyArray = (...values: Bytes[]): Buffer => len(5, ...values.map((v) => len(1, v)));
const anyKvList = (...kvs: Bytes[]): Buffer => len(6, ...kvs.map((k) => len(1, k)));
const anyBytes = (v: Bytes): Buffer => len(7, v);
/** A KeyValue payload. */
const kv = (k: string, value: Bytes, ...extra: Bytes[]): Buffer => cat(str(1, k), len(2, value), ...extra);
/** A Resource payload. */
const resource = (...kvs: Bytes[]): Buffer => cat(...kvs.map((k) => len(1, k)));

interface RawSpanOptions {
  traceId?: Bytes | null;
  spanId?: Bytes | null;
  name?: Bytes;
  extra?: Bytes[];
}

const TRACE_ID = Buffer.from('0102030405060708090a0b0c0d0e0f10', 'hex');
const SPAN_ID = Buffer.from('1112131415161718', 'hex');

/** A Span payload with valid ids unless told otherwise (null leaves the field out). */
function rawSpan(options: RawSpanOptions = {}): Buffer {
  return cat(
    options.traceId === null ? Buffer.alloc(0) : len(1, options.traceId ?? TRACE_ID),
    options.spanId === null ? Buffer.alloc(0) : len(2, options.spanId ?? SPAN_ID),
    len(5, options.name ?? Buffer.from('GET /users/*')),
    vint(6, 2),
    fixed64(7, 1_700_000_000_000_000_000n),
    fixed64(8, 1_700_000_000_001_500_000n),
    ...(options.extra ?? []),
  );
}
/** A ScopeSpans payload with an empty scope, as OBI writes. */
const scopeSpans = (...spans: Bytes[]): Buffer => cat(len(1), ...spans.map((s) => len(2, s)));
/** A ResourceSpans payload. */
const resourceSpans = (res: Bytes | undefined, ...scopes: Bytes[]): Buffer => cat(res === undefined ? Buffer.alloc(0) : len(1, res), ...scopes.map((s) => len(2, s)));
/** An export request from ResourceSpans / ResourceMetrics payloads. */
const request = (...resources: Bytes[]): Buffer => cat(...resources.map((r) => len(1, r)));

// ---------------------------------------------------------------------------------------------
// The oracle: protobufjs's full decode.

interface PlainAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  doubleValue?: number;
  arrayValue?: { values?: PlainAnyValue[] };
  kvlistValue?: { values?: PlainKeyValue[] };
  bytesValue?: string;
}
interface PlainKeyValue {
  key?: string;
  value?: PlainAnyValue;
}
interface PlainResourceItem {
  resource?: { attributes?: PlainKeyValue[] };
  scopeSpans?: { spans?: unknown[] }[];
  scopeMetrics?: { metrics?: Record<string, { dataPoints?: unknown[] } | undefined>[] }[];
}

function oracleValue(v: PlainAnyValue | undefined): AttrValue {
  if (v === undefined) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) {
    const big = BigInt(v.intValue);
    return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  }
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(oracleValue);
  if (v.kvlistValue !== undefined) return Object.fromEntries(oracleAttributes(v.kvlistValue.values));
  if (v.bytesValue !== undefined) return new Uint8Array(Buffer.from(v.bytesValue, 'base64'));
  return null;
}

/** Attributes as protobuf defines them, first occurrence of a key winning. */
function oracleAttributes(kvs: PlainKeyValue[] | undefined): Map<string, AttrValue> {
  const out = new Map<string, AttrValue>();
  for (const item of kvs ?? []) if (!out.has(item.key ?? '')) out.set(item.key ?? '', oracleValue(item.value));
  return out;
}

const DATA_KINDS = ['gauge', 'sum', 'histogram', 'exponentialHistogram', 'summary'];

function oracle(signal: Signal, bytes: Bytes): { attributes: Map<string, AttrValue>; itemCount: number }[] {
  const type = signal === 'traces' ? types.ExportTraceServiceRequest : types.ExportMetricsServiceRequest;
  const plain = type.toObject(type.decode(bytes), { longs: String, bytes: String, enums: Number, defaults: false }) as {
    resourceSpans?: PlainResourceItem[];
    resourceMetrics?: PlainResourceItem[];
  };
  const resources = (signal === 'traces' ? plain.resourceSpans : plain.resourceMetrics) ?? [];
  return resources.map((r) => {
    let itemCount = 0;
    for (const scope of r.scopeSpans ?? []) itemCount += scope.spans?.length ?? 0;
    for (const scope of r.scopeMetrics ?? []) {
      for (const metric of scope.metrics ?? []) {
        for (const kind of DATA_KINDS) itemCount += metric[kind]?.dataPoints?.length ?? 0;
      }
    }
    return { attributes: oracleAttributes(r.resource?.attributes), itemCount };
  });
}

/** Comparable form: byte strings as hex, maps as entry lists in order. */
function normalize(value: unknown): unknown {
  if (value instanceof Uint8Array) return { hex: Buffer.from(value).toString('hex') };
  if (value instanceof Map) return [...(value as Map<string, unknown>)].map(([k, v]) => [k, normalize(v)]);
  if (Array.isArray(value)) return value.map(normalize);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]));
  return value;
}

function assertSameBytes(actual: Bytes, expected: Bytes, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.length);
  const e = Buffer.from(expected.buffer, expected.byteOffset, expected.length);
  if (!a.equals(e)) {
    let i = 0;
    while (a[i] === e[i]) i++;
    assert.fail(`${what}: first difference at byte ${i} of ${a.length}`);
  }
}

/**
 * Parses `bytes` and checks every decision against protobufjs; when `identity`, also that the
 * batch re-encodes to exactly the input.
 */
function parseAndCompare(signal: Signal, bytes: Bytes, identity = true): ParsedRequest {
  const parsed = parseRequest(signal, bytes);
  assert.equal(parsed.rejected, 0);
  assert.equal(parsed.rejectMessage, '');
  const expected = oracle(signal, bytes);
  assert.equal(parsed.batch.resources.length, expected.length, 'resource count');
  parsed.batch.resources.forEach((block, i) => {
    assert.deepEqual(normalize(block.attributes), normalize(expected[i]!.attributes), `attributes of resource ${i}`);
    assert.equal(block.itemCount, expected[i]!.itemCount, `itemCount of resource ${i}`);
  });
  assert.equal(parsed.batch.itemCount, expected.reduce((n, r) => n + r.itemCount, 0));
  if (identity) assertSameBytes(parsed.batch.toRequestBytes(), bytes, 'toRequestBytes');
  // Counting only (what the receiver does for resources no pipeline keeps) gives the same blocks.
  const counted = parseRequest(signal, bytes, () => false);
  assert.deepEqual(
    counted.batch.resources.map((b) => [normalize(b.attributes), b.itemCount, Buffer.from(b.bytes).toString('hex')]),
    parsed.batch.resources.map((b) => [normalize(b.attributes), b.itemCount, Buffer.from(b.bytes).toString('hex')]),
    'counting only',
  );
  assert.ok(parsed.batch.resources.every((b) => b.unchecked === false));
  return parsed;
}

// ---------------------------------------------------------------------------------------------

void describe('parseRequest on OBI-shaped traces', () => {
  void test('a mixed request of host, k8s and docker instances: attributes, counts and bytes', () => {
    const instances: ObiInstance[] = [];
    for (let i = 0; i < 8; i++) instances.push(hostInstance(`web-${i}`, 4000 + i));
    for (let i = 0; i < 8; i++) instances.push(k8sInstance('shop', `cart-7d9f-${i}`, 'cart'));
    for (let i = 0; i < 8; i++) instances.push(dockerInstance(`svc${i}`, `proj-svc${i}-1`));
    const spanCounts = instances.map((_, i) => (i % 3) + 1);
    const rs = instances.map((instance, i) =>
      obiResourceSpans(
        instance,
        Array.from({ length: spanCounts[i]! }, (_, j) => obiSpan({ name: `GET /item/${i}/${j}`, kind: j === 0 ? 2 : 3 })),
      ),
    );
    const bytes = encodeTraces(rs);
    const parsed = parseAndCompare('traces', bytes);

    assert.deepEqual(
      parsed.batch.resources.map((b) => b.attributes.get('service.instance.id')),
      instances.map((i) => i.instanceId),
    );
    assert.equal(parsed.batch.resources[0]!.attributes.get('service.instance.id'), 'web-0:4000');
    assert.equal(parsed.batch.resources[8]!.attributes.get('service.instance.id'), 'shop.cart-7d9f-0.cart');
    assert.equal(parsed.batch.resources[8]!.attributes.get('k8s.namespace.name'), 'shop');
    assert.equal(parsed.batch.resources[16]!.attributes.get('service.name'), 'svc0');
    assert.equal(parsed.batch.resources[16]!.attributes.get('container.name'), 'proj-svc0-1');
    assert.deepEqual(
      parsed.batch.resources.map((b) => b.itemCount),
      spanCounts,
    );
    assert.equal(parsed.batch.itemCount, 48);
    // Each block is exactly that resource's own encoding.
    rs.forEach((r, i) => {
      const own = types.ResourceSpans.encode(types.ResourceSpans.fromObject(r)).finish();
      assertSameBytes(parsed.batch.resources[i]!.bytes, own, `resource ${i}`);
    });
  });

  void test('a seeded corpus of 40 requests agrees with protobufjs and round-trips byte for byte', () => {
    const random = seededRandom(20240611);
    const pick = (n: number) => Math.floor(random() * n);
    let totalSpans = 0;
    for (let r = 0; r < 40; r++) {
      const resources = Array.from({ length: 1 + pick(12) }, (_, i) => {
        const form = pick(3);
        const instance =
          form === 0 ? hostInstance(`host-${pick(50)}`, 1 + pick(99999)) : form === 1 ? k8sInstance(`ns${pick(4)}`, `pod-${i}`, `c${pick(3)}`) : dockerInstance(`compose${i}`, `ctr-${i}`);
        const spans = Array.from({ length: pick(5) }, () =>
          obiSpan({
            name: pick(2) === 0 ? 'GET /users/*' : 'SELECT users',
            statusCode: pick(3),
            attributes: [
              { key: 'http.response.status_code', value: { intValue: 200 + pick(400) } },
              { key: 'db.query.text', value: { stringValue: 'x'.repeat(pick(300)) } },
            ],
          }),
        );
        totalSpans += spans.length;
        return obiResourceSpans(instance, spans);
      });
      parseAndCompare('traces', encodeTraces(resources));
    }
    assert.ok(totalSpans > 100, `corpus has ${totalSpans} spans`);
  });

  void test('an empty request is an empty batch', () => {
    const parsed = parseRequest('traces', new Uint8Array(0));
    assert.equal(parsed.batch.resources.length, 0);
    assert.equal(parsed.batch.itemCount, 0);
    assert.equal(parsed.batch.toRequestBytes().length, 0);
  });
});

void describe('parseRequest edge cases (raw bytes)', () => {
  void test('unknown fields at every level are tolerated and forwarded byte for byte', () => {
    const attrs = cat(
      resource(
        kv('service.instance.id', anyStr('u-host:77'), unknownFields(40)),
        kv('nested', cat(anyKvList(kv('inner', cat(anyInt(5), unknownFields(30)))), unknownFields(20))),
      ),
      vint(2, 0),
      unknownFields(50),
    );
    const event = cat(fixed64(1, 5n), str(2, 'exception'), len(3, kv('exception.type', anyStr('E'))), unknownFields(60));
    const link = cat(len(1, randomBytes(16)), len(2, randomBytes(8)), fixed32(6, 1), unknownFields(70));
    const status = cat(str(1, 'reserved field 1'), str(2, 'boom'), vint(3, 2), unknownFields(80));
    const span = rawSpan({ extra: [len(11, event), len(13, link), len(15, status), fixed32(16, 0x101), unknownFields(100), unknownFields(5000)] });
    const scope = cat(len(1, str(1, 'obi'), str(2, '0.3'), len(3, kv('a', anyStr('b'))), unknownFields(90)), len(2, span), len(2, rawSpan()), str(3, 'https://schema'), unknownFields(110));
    const resourceItem = cat(len(1, attrs), len(2, scope), len(2, scopeSpans()), str(3, 'https://schema/r'), unknownFields(120));
    const second = resourceSpans(resource(kv('service.instance.id', anyStr('other:1'))), scopeSpans(rawSpan()));
    const clean = request(resourceItem, second);
    const parsedClean = parseAndCompare('traces', clean);
    assert.deepEqual(normalize(parsedClean.batch.resources[0]!.attributes), [
      ['service.instance.id', 'u-host:77'],
      ['nested', { inner: 5 }],
    ]);
    assert.deepEqual(
      parsedClean.batch.resources.map((b) => b.itemCount),
      [2, 1],
    );
    assertSameBytes(parsedClean.batch.resources[0]!.bytes, resourceItem, 'resource with unknown fields');

    // Unknown fields at the request level are skipped: the rest is forwarded unchanged.
    const withTopLevelUnknowns = cat(unknownFields(200), len(1, resourceItem), vint(2, 9), len(1, second), unknownFields(300));
    const parsed = parseAndCompare('traces', withTopLevelUnknowns, false);
    assertSameBytes(parsed.batch.toRequestBytes(), clean, 'request without its top-level unknown fields');
  });

  void test('resources with no scopes, an empty ResourceSpans, and a scope with no spans', () => {
    const idle1 = resourceSpans(resource(kv('service.instance.id', anyStr('idle:1'))));
    const idle2 = resourceSpans(resource(kv('service.instance.id', anyStr('idle:2'))), scopeSpans(), scopeSpans());
    const bytes = request(idle1, Buffer.alloc(0), idle2);
    const parsed = parseAndCompare('traces', bytes);
    assert.deepEqual(
      parsed.batch.resources.map((b) => [b.attributes.get('service.instance.id'), b.itemCount]),
      [
        ['idle:1', 0],
        [undefined, 0],
        ['idle:2', 0],
      ],
    );
    assertSameBytes(parsed.batch.resources[0]!.bytes, idle1, 'resource without scopes');
    assert.equal(parsed.batch.resources[1]!.bytes.length, 0);
    assertSameBytes(parsed.batch.resources[2]!.bytes, idle2, 'resource with empty scopes');
  });

  void test('a ResourceSpans without a Resource message has no attributes', () => {
    const bytes = request(resourceSpans(undefined, scopeSpans(rawSpan(), rawSpan())), resourceSpans(resource(), scopeSpans(rawSpan())));
    const parsed = parseAndCompare('traces', bytes);
    assert.equal(parsed.batch.resources[0]!.attributes.size, 0);
    assert.equal(parsed.batch.resources[0]!.itemCount, 2);
    assert.equal(parsed.batch.resources[1]!.attributes.size, 0);
    assert.equal(parsed.batch.resources[1]!.itemCount, 1);
  });

  void test('repeated fields: many scopes, many spans per scope, resource attributes split across occurrences', () => {
    const res = resource(kv('service.instance.id', anyStr('rep:1')), kv('a', anyInt(1)), kv('b', anyInt(2)));
    const scopes = Array.from({ length: 4 }, (_, i) => scopeSpans(...Array.from({ length: i + 1 }, () => rawSpan())));
    const bytes = request(resourceSpans(res, ...scopes), resourceSpans(res, ...scopes));
    const parsed = parseAndCompare('traces', bytes);
    assert.deepEqual(
      parsed.batch.resources.map((b) => b.itemCount),
      [10, 10],
    );
    assert.deepEqual(normalize(parsed.batch.resources[1]!.attributes), [
      ['service.instance.id', 'rep:1'],
      ['a', 1],
      ['b', 2],
    ]);
  });

  void test('a 1 MiB attribute value, in the resource and in a span', () => {
    const big = 'a'.repeat((1 << 20) - 3) + '€';
    assert.equal(Buffer.byteLength(big), 1 << 20);
    const spanWithBig = rawSpan({ extra: [len(9, kv('db.query.text', anyStr(big)))] });
    const bytes = request(resourceSpans(resource(kv('service.instance.id', anyStr('big:1')), kv('big', anyStr(big))), scopeSpans(spanWithBig)));
    const parsed = parseAndCompare('traces', bytes);
    const value = parsed.batch.resources[0]!.attributes.get('big');
    assert.equal(typeof value, 'string');
    assert.equal((value as string).length, (1 << 20) - 2);
    assert.ok((value as string).endsWith('a€'));
  });

  void test('int64 attribute values beyond 2^53 stay exact as bigint; safe ones are numbers', () => {
    const bytes = request(
      resourceSpans(
        resource(
          kv('above', anyInt(2n ** 53n + 1n)),
          kv('max', anyInt(2n ** 63n - 1n)),
          kv('min', anyInt(-(2n ** 63n))),
          kv('below', anyInt(-(2n ** 53n) - 1n)),
          kv('safe', anyInt(2 ** 53 - 1)),
          kv('negative', anyInt(-42)),
          kv('zero', anyInt(0)),
        ),
      ),
    );
    const parsed = parseAndCompare('traces', bytes);
    const attrs = parsed.batch.resources[0]!.attributes;
    assert.equal(attrs.get('above'), 9007199254740993n);
    assert.equal(attrs.get('max'), 9223372036854775807n);
    assert.equal(attrs.get('min'), -9223372036854775808n);
    assert.equal(attrs.get('below'), -9007199254740993n);
    assert.equal(attrs.get('safe'), 9007199254740991);
    assert.equal(attrs.get('negative'), -42);
    assert.equal(attrs.get('zero'), 0);
  });

  void test('nested kvlist and array values, bytes, doubles, booleans and an empty AnyValue', () => {
    const bytes = request(
      resourceSpans(
        resource(
          kv(
            'tree',
            anyKvList(
              kv('list', anyArray(anyInt(1), anyStr('x'), anyKvList(kv('deep', anyBool(true))), anyBytes(Buffer.from([0, 255])), anyArray())),
              kv('ratio', anyDouble(1.5)),
              kv('off', anyBool(false)),
              kv('nothing', Buffer.alloc(0)),
            ),
          ),
          kv('flat', anyArray(anyDouble(-0.25), anyStr(''))),
        ),
        scopeSpans(rawSpan()),
      ),
    );
    const parsed = parseAndCompare('traces', bytes);
    const attrs = parsed.batch.resources[0]!.attributes;
    assert.deepEqual(normalize(attrs.get('tree')), {
      list: [1, 'x', { deep: true }, { hex: '00ff' }, []],
      ratio: 1.5,
      off: false,
      nothing: null,
    });
    assert.deepEqual(attrs.get('flat'), [-0.25, '']);
  });

  void test('duplicate attribute keys: the first occurrence wins, also inside a kvlist', () => {
    const bytes = request(
      resourceSpans(
        resource(
          kv('service.instance.id', anyStr('first:1')),
          kv('service.name', anyStr('svc')),
          kv('service.instance.id', anyStr('second:2')),
          kv('inner', anyKvList(kv('d', anyInt(1)), kv('d', anyInt(2)))),
        ),
        scopeSpans(rawSpan()),
      ),
    );
    const parsed = parseAndCompare('traces', bytes);
    assert.deepEqual(normalize(parsed.batch.resources[0]!.attributes), [
      ['service.instance.id', 'first:1'],
      ['service.name', 'svc'],
      ['inner', { d: 1 }],
    ]);
  });
});

// ---------------------------------------------------------------------------------------------

/** Builds a ResourceMetrics payload from metric payloads. */
const resourceMetrics = (res: Bytes | undefined, ...metrics: Bytes[]): Buffer =>
  cat(res === undefined ? Buffer.alloc(0) : len(1, res), len(2, len(1, str(1, 'obi')), ...metrics.map((m) => len(2, m))));
const numberPoint = (value: number): Buffer => cat(len(7, kv('k', anyStr('v'))), fixed64(2, 1n), fixed64(3, 2n), double(4, value));
const gauge = (name: string, ...points: Bytes[]): Buffer => cat(str(1, name), str(3, '1'), len(5, ...points.map((p) => len(1, p))));

void describe('parseRequest on metrics', () => {
  void test('gauge, sum, histogram, exponential histogram and summary points are counted', () => {
    const point = { timeUnixNano: '2', attributes: [{ key: 'k', value: { stringValue: 'v' } }] };
    const body = {
      resourceMetrics: [
        {
          resource: { attributes: [{ key: 'service.instance.id', value: { stringValue: 'm-host:9' } }] },
          scopeMetrics: [
            {
              scope: { name: 'obi' },
              metrics: [
                { name: 'g', gauge: { dataPoints: [{ ...point, asDouble: 1 }, { ...point, asInt: '2' }] } },
                { name: 's', sum: { dataPoints: [point, point, point], aggregationTemporality: 2, isMonotonic: true } },
                { name: 'h', histogram: { dataPoints: [{ ...point, count: '3', bucketCounts: ['1', '2'], explicitBounds: [0.5] }], aggregationTemporality: 2 } },
              ],
            },
            {
              metrics: [
                {
                  name: 'e',
                  exponentialHistogram: {
                    dataPoints: [
                      { ...point, scale: -2, positive: { offset: -1, bucketCounts: ['4', '5'] }, negative: { bucketCounts: ['1'] } },
                      { ...point, zeroCount: '3' },
                    ],
                  },
                },
                { name: 'q', summary: { dataPoints: [{ ...point, quantileValues: [{ quantile: 0.99, value: 12 }] }] } },
                { name: 'empty_gauge', gauge: {} },
              ],
            },
          ],
        },
        { resource: {}, scopeMetrics: [{ metrics: [{ name: 'nodata' }] }] },
      ],
    };
    const type = types.ExportMetricsServiceRequest;
    const bytes = type.encode(type.fromObject(body)).finish();
    const parsed = parseAndCompare('metrics', bytes);
    assert.deepEqual(
      parsed.batch.resources.map((b) => b.itemCount),
      [9, 0],
    );
    assert.equal(parsed.batch.resources[0]!.attributes.get('service.instance.id'), 'm-host:9');
  });

  void test('packed and unpacked HistogramDataPoint.bucket_counts / explicit_bounds and Buckets.bucket_counts', () => {
    const common = cat(len(9, kv('le', anyStr('x'))), fixed64(2, 1n), fixed64(3, 2n), fixed64(4, 6n), double(5, 10.5));
    const packedHist = cat(common, packedFixed64(6, [1n, 2n, 3n]), packedDouble(7, [0.5, 1]));
    const unpackedHist = cat(common, fixed64(6, 1n), fixed64(6, 2n), fixed64(6, 3n), double(7, 0.5), double(7, 1));
    // Both forms mixed in one point: protobuf parsers must accept either, in any order.
    const mixedHist = cat(common, fixed64(6, 1n), packedFixed64(6, [2n, 3n]), packedDouble(7, [0.5]), double(7, 1));
    const histogram = cat(str(1, 'latency'), len(9, len(1, packedHist), len(1, unpackedHist), len(1, mixedHist), vint(2, 2)));

    const packedBuckets = cat(vint(1, varintZigZag(-3)), len(2, varint(4), varint(300), varint(0)));
    const unpackedBuckets = cat(vint(1, varintZigZag(-3)), vint(2, 4), vint(2, 300), vint(2, 0));
    const expPoint = (buckets: Bytes) => cat(len(1, kv('k', anyStr('v'))), fixed64(4, 304n), vint(6, varintZigZag(2)), len(8, buckets), len(9, buckets));
    const expHistogram = cat(str(1, 'exp'), len(10, len(1, expPoint(packedBuckets)), len(1, expPoint(unpackedBuckets))));

    const bytes = request(resourceMetrics(resource(kv('service.instance.id', anyStr('h:1'))), histogram, expHistogram));
    const parsed = parseAndCompare('metrics', bytes);
    assert.equal(parsed.batch.resources[0]!.itemCount, 5);

    // The raw encodings mean what this test says they mean.
    const decoded = types.ExportMetricsServiceRequest.toObject(types.ExportMetricsServiceRequest.decode(bytes), { longs: String }) as {
      resourceMetrics: { scopeMetrics: { metrics: { histogram?: { dataPoints: { bucketCounts: string[]; explicitBounds: number[] }[] }; exponentialHistogram?: { dataPoints: { positive: { offset: number; bucketCounts: string[] } }[] } }[] }[] }[];
    };
    const metrics = decoded.resourceMetrics[0]!.scopeMetrics[0]!.metrics;
    for (const p of metrics[0]!.histogram!.dataPoints) {
      assert.deepEqual(p.bucketCounts, ['1', '2', '3']);
      assert.deepEqual(p.explicitBounds, [0.5, 1]);
    }
    for (const p of metrics[1]!.exponentialHistogram!.dataPoints) {
      assert.deepEqual(p.positive, { offset: -3, bucketCounts: ['4', '300', '0'] });
    }
  });

  void test('a metric with an empty or missing name is rejected with its points; the others keep their bytes', () => {
    const good1 = gauge('cpu', numberPoint(1), numberPoint(2));
    const unnamed = gauge('', numberPoint(3), numberPoint(4));
    const good2 = cat(gauge('mem', numberPoint(5)), unknownFields(40));
    const noName = cat(str(3, 'By'), len(7, len(1, numberPoint(6)), vint(2, 1)));
    const res = resource(kv('service.instance.id', anyStr('m:1')));
    const intact = resourceMetrics(resource(kv('service.instance.id', anyStr('m:2'))), gauge('ok', numberPoint(7)));
    const bytes = request(resourceMetrics(res, good1, unnamed, good2, noName), intact);
    const parsed = parseRequest('metrics', bytes);
    assert.equal(parsed.rejected, 3);
    assert.equal(
      parsed.rejectMessage,
      '3 data points rejected: resource_metrics[0].scope_metrics[0].metrics[1]: metric name is empty; resource_metrics[0].scope_metrics[0].metrics[3]: metric name is empty',
    );
    assert.deepEqual(
      parsed.batch.resources.map((b) => b.itemCount),
      [3, 1],
    );
    assert.equal(parsed.batch.itemCount, 4);
    assert.equal(parsed.batch.resources[0]!.attributes.get('service.instance.id'), 'm:1');
    assertSameBytes(parsed.batch.resources[0]!.bytes, resourceMetrics(res, good1, good2), 'repaired resource');
    assertSameBytes(parsed.batch.resources[1]!.bytes, intact, 'untouched resource');
  });
});

function varintZigZag(n: number): number {
  return n >= 0 ? n * 2 : -n * 2 - 1;
}

// ---------------------------------------------------------------------------------------------

void describe('partial rejection of spans with invalid ids', () => {
  void test('missing, all-zero and wrong-length ids are rejected and named; the other spans keep their bytes', () => {
    const res = resource(kv('service.instance.id', anyStr('web:4242')));
    const valid1 = rawSpan({ traceId: randomBytes(16), spanId: randomBytes(8) });
    const valid2 = rawSpan({ traceId: randomBytes(16), spanId: randomBytes(8), extra: [unknownFields(100), len(9, kv('x', anyInt(1)))] });
    const missingTrace = rawSpan({ traceId: null });
    const zeroSpan = rawSpan({ spanId: Buffer.alloc(8) });
    const shortTrace = rawSpan({ traceId: randomBytes(8) });
    const longSpan = rawSpan({ spanId: randomBytes(9) });
    const zeroTrace = rawSpan({ traceId: Buffer.alloc(16) });
    const missingSpan = rawSpan({ spanId: null });

    const scopeA = scopeSpans(valid1);
    const scopeB = cat(len(1), len(2, missingTrace), len(2, valid2), len(2, zeroSpan), str(3, 'schema'), unknownFields(50));
    const scopeC = scopeSpans(shortTrace, longSpan, zeroTrace, missingSpan);
    const before = resourceSpans(undefined, scopeA); // the first resource is all valid
    const damaged = cat(len(1, res), len(2, scopeA), len(2, scopeB), len(2, scopeC), unknownFields(120));
    const after = resourceSpans(resource(kv('service.instance.id', anyStr('other:1'))), scopeSpans(rawSpan()));
    const bytes = request(before, damaged, after);

    const parsed = parseRequest('traces', bytes);
    assert.equal(parsed.rejected, 6);
    assert.equal(
      parsed.rejectMessage,
      '6 spans rejected: resource_spans[1].scope_spans[1].spans[0]: trace_id is missing; ' +
        'resource_spans[1].scope_spans[1].spans[2]: span_id is all zeros; ' +
        'resource_spans[1].scope_spans[2].spans[0]: trace_id has 8 bytes, expected 16; and 3 more',
    );
    assert.deepEqual(
      parsed.batch.resources.map((b) => b.itemCount),
      [1, 2, 1],
    );
    assert.equal(parsed.batch.itemCount, 4);
    assert.equal(parsed.batch.resources[1]!.attributes.get('service.instance.id'), 'web:4242');
    // Blocks without invalid spans are the input's bytes; the damaged one loses exactly its invalid spans.
    assertSameBytes(parsed.batch.resources[0]!.bytes, before, 'resource before');
    assertSameBytes(parsed.batch.resources[2]!.bytes, after, 'resource after');
    const expectedRepaired = cat(
      len(1, res),
      len(2, scopeA),
      len(2, cat(len(1), len(2, valid2), str(3, 'schema'), unknownFields(50))),
      len(2, scopeSpans()),
      unknownFields(120),
    );
    assertSameBytes(parsed.batch.resources[1]!.bytes, expectedRepaired, 'repaired resource');
    // The repaired request is what protobufjs sees once the invalid spans are gone.
    const reparsed = parseAndCompare('traces', parsed.batch.toRequestBytes());
    assert.deepEqual(
      reparsed.batch.resources.map((b) => b.itemCount),
      [1, 2, 1],
    );
  });

  void test('OBI-shaped: one bad span among valid ones', () => {
    const good = obiSpan({ name: 'good' });
    const bad = obiSpan({ name: 'bad', spanId: Buffer.alloc(8) });
    const noTrace = obiSpan({ name: 'no-trace', traceId: Buffer.alloc(0) });
    const bytes = encodeTraces([obiResourceSpans(hostInstance('h', 1), [good]), obiResourceSpans(k8sInstance('ns', 'p', 'c'), [bad, good, noTrace])]);
    const parsed = parseRequest('traces', bytes);
    assert.equal(parsed.rejected, 2);
    assert.equal(
      parsed.rejectMessage,
      '2 spans rejected: resource_spans[1].scope_spans[0].spans[0]: span_id is all zeros; resource_spans[1].scope_spans[2].spans[0]: trace_id is missing',
    );
    assert.deepEqual(
      parsed.batch.resources.map((b) => b.itemCount),
      [1, 1],
    );
    // The surviving span's own encoding appears unchanged inside the repaired block.
    const spanBytes = spanOnly(good);
    assert.ok(spanBytes.length > 100);
    assert.ok(Buffer.from(parsed.batch.resources[1]!.bytes).includes(len(2, spanBytes)), 'valid span bytes preserved');
    const decoded = types.ResourceSpans.toObject(types.ResourceSpans.decode(parsed.batch.resources[1]!.bytes)) as { scopeSpans: { spans?: { name: string }[] }[] };
    assert.deepEqual(
      decoded.scopeSpans.flatMap((s) => (s.spans ?? []).map((span) => span.name)),
      ['good'],
    );
  });
});

/** The encoding of one span, as it sits inside its ScopeSpans. */
function spanOnly(span: ReturnType<typeof obiSpan>): Buffer {
  const type = types.ResourceSpans.root.lookupType('opentelemetry.proto.trace.v1.Span');
  return Buffer.from(type.encode(type.fromObject(span)).finish());
}

// ---------------------------------------------------------------------------------------------

void describe('malformed requests', () => {
  const okResource = resourceSpans(resource(kv('service.instance.id', anyStr('ok:1'))), scopeSpans(rawSpan()));
  /** A request whose resource_spans[1] has scope_spans[0] with `span` as spans[0]. */
  const withSpan = (span: Bytes): Buffer => request(okResource, resourceSpans(resource(kv('service.instance.id', anyStr('bad:1'))), scopeSpans(span)));

  function assertWireError(signal: Signal, bytes: Bytes, expected: string): void {
    assert.throws(
      () => parseRequest(signal, bytes),
      (err: unknown) => {
        assert.ok(err instanceof WireFormatError, `expected a WireFormatError, got ${String(err)}`);
        assert.equal(err.message, expected);
        return true;
      },
    );
  }

  void test('a request cut short inside resource_spans[1]', () => {
    const whole = request(okResource, okResource, okResource);
    const cut = whole.subarray(0, okResource.length + 2 + 20);
    assertWireError('traces', cut, `resource_spans[1]: length ${okResource.length} runs past the end of the message`);
  });

  void test('a length inside a span that runs past the span', () => {
    const span = cat(len(1, TRACE_ID), len(2, SPAN_ID), key(5, 2), varint(50), Buffer.from('abc'));
    assertWireError('traces', withSpan(span), 'resource_spans[1].scope_spans[0].spans[0]: length 50 runs past the end of the message');
  });

  void test('a known field with the wrong wire type', () => {
    assertWireError('traces', withSpan(rawSpan({ extra: [vint(5, 1)] })), 'resource_spans[1].scope_spans[0].spans[0].name: wire type 0, expected 2');
    assertWireError('traces', withSpan(rawSpan({ extra: [len(6, Buffer.from([1]))] })), 'resource_spans[1].scope_spans[0].spans[0].kind: wire type 2, expected 0');
    assertWireError('traces', withSpan(rawSpan({ extra: [vint(7, 1)] })), 'resource_spans[1].scope_spans[0].spans[0].start_time_unix_nano: wire type 0, expected 1');
    assertWireError('traces', cat(len(1, okResource), vint(1, 3)), 'resource_spans: wrong wire type 0');
  });

  void test('invalid UTF-8 in a span name and in a resource attribute', () => {
    assertWireError('traces', withSpan(rawSpan({ name: Buffer.from([0x47, 0xff, 0xfe]) })), 'resource_spans[1].scope_spans[0].spans[0].name: string is not valid UTF-8');
    assertWireError(
      'traces',
      request(resourceSpans(resource(kv('k', len(1, Buffer.from([0xc3, 0x28])))))),
      'resource_spans[0].resource.attributes["k"]: string field is not valid UTF-8',
    );
  });

  void test('a link trace_id of 5 bytes', () => {
    const link = cat(len(1, randomBytes(5)), len(2, randomBytes(8)));
    assertWireError('traces', withSpan(rawSpan({ extra: [len(13, link)] })), 'resource_spans[1].scope_spans[0].spans[0].links.trace_id: 5 bytes, expected 16');
  });

  void test('a varint longer than 10 bytes, and one cut off at the end of its message', () => {
    const overrun = cat(key(6, 0), Buffer.alloc(11, 0x80), Buffer.from([1]));
    assertWireError('traces', withSpan(rawSpan({ extra: [overrun] })), 'resource_spans[1].scope_spans[0].spans[0]: varint longer than 10 bytes');
    const cutOff = cat(key(6, 0), Buffer.from([0x80, 0x80]));
    assertWireError('traces', withSpan(rawSpan({ extra: [cutOff] })), 'resource_spans[1].scope_spans[0].spans[0]: truncated varint');
  });

  void test('the location names the right indexes deeper in a request', () => {
    const badSpan = rawSpan({ extra: [len(15, str(2, 'ok'), len(3, Buffer.from([0])))] });
    const scopes = [scopeSpans(rawSpan()), scopeSpans(rawSpan()), scopeSpans(rawSpan(), badSpan)];
    assertWireError(
      'traces',
      request(okResource, okResource, resourceSpans(resource(), ...scopes)),
      'resource_spans[2].scope_spans[2].spans[1].status.code: wire type 2, expected 0',
    );
  });

  void test('malformed metric points are located too', () => {
    const point = cat(fixed64(3, 1n), len(7, Buffer.alloc(12)));
    const histogram = cat(str(1, 'h'), len(9, len(1), len(1, point)));
    assertWireError(
      'metrics',
      request(resourceMetrics(resource(), gauge('g', numberPoint(1)), histogram)),
      'resource_metrics[0].scope_metrics[0].metrics[1].histogram.data_points[1].explicit_bounds: packed fixed64 length is not a multiple of 8',
    );
  });
});

void describe('resources no pipeline keeps are counted, not checked', () => {
  const keptId = resource(kv('service.instance.id', anyStr('kept:1')));
  const droppedId = resource(kv('service.instance.id', anyStr('dropped:1')));
  const mayKeep = (attributes: ReadonlyMap<string, AttrValue>): boolean => attributes.get('service.instance.id') === 'kept:1';
  const badName = rawSpan({ name: Buffer.from([0x47, 0xff, 0xfe]) });
  const badLength = rawSpan({ extra: [len(13, cat(len(1, randomBytes(5)), len(2, randomBytes(8))))] });
  const noTraceId = rawSpan({ traceId: null });

  void test('malformed and invalid spans in a dropped resource are counted and not refused', () => {
    const dropped = resourceSpans(droppedId, scopeSpans(rawSpan(), badName), scopeSpans(badLength, noTraceId));
    const kept = resourceSpans(keptId, scopeSpans(rawSpan(), rawSpan()));
    const bytes = request(kept, dropped);
    const parsed = parseRequest('traces', bytes, mayKeep);
    assert.equal(parsed.rejected, 0, 'an invalid span nobody keeps is filtered, not rejected');
    assert.deepEqual(
      parsed.batch.resources.map((b) => [b.attributes.get('service.instance.id'), b.itemCount, b.unchecked]),
      [
        ['kept:1', 2, false],
        ['dropped:1', 4, true],
      ],
    );
    assertSameBytes(parsed.batch.toRequestBytes(), bytes, 'toRequestBytes');
    // Without the predicate (or when the resource is kept) the same request is refused.
    assert.throws(() => parseRequest('traces', bytes), /resource_spans\[1\]\.scope_spans\[0\]\.spans\[1\]\.name: string is not valid UTF-8/);
    assert.throws(() => parseRequest('traces', bytes, () => true), /not valid UTF-8/);
  });

  void test('a kept resource is still checked, and its invalid spans rejected', () => {
    const kept = resourceSpans(keptId, scopeSpans(rawSpan(), noTraceId));
    const parsed = parseRequest('traces', request(kept), mayKeep);
    assert.equal(parsed.rejected, 1);
    assert.equal(parsed.batch.resources[0]!.unchecked, false);
    assert.throws(() => parseRequest('traces', request(resourceSpans(keptId, scopeSpans(badName))), mayKeep), /not valid UTF-8/);
  });

  void test('framing is still read in a dropped resource: a span running past its scope is refused', () => {
    const cutScope = cat(len(1), key(2, 2), varint(500), rawSpan());
    assert.throws(
      () => parseRequest('traces', request(resourceSpans(droppedId, cutScope)), mayKeep),
      /resource_spans\[0\]\.scope_spans\[0\]\.spans\[0\]: length 500 runs past the end of the message/,
    );
  });

  void test('a resource written after its scopes, or written twice, is checked whenever the final attributes may be kept', () => {
    const late = cat(len(2, scopeSpans(badName)), len(1, droppedId));
    assert.throws(() => parseRequest('traces', request(late), mayKeep), /not valid UTF-8/, 'scopes before the resource are checked');
    // Dropped by the first resource field, kept by the second (the last one wins).
    const twice = cat(len(1, droppedId), len(2, scopeSpans(badName)), len(1, keptId));
    assert.throws(() => parseRequest('traces', request(twice), mayKeep), /not valid UTF-8/);
    const twiceValid = cat(len(1, droppedId), len(2, scopeSpans(rawSpan())), len(1, keptId));
    const parsed = parseRequest('traces', request(twiceValid), mayKeep);
    assert.deepEqual([parsed.batch.resources[0]!.attributes.get('service.instance.id'), parsed.batch.resources[0]!.unchecked], ['kept:1', false]);
  });

  void test('metric points of a dropped resource are counted through every data type', () => {
    const badPoint = cat(fixed64(3, 1n), vint(4, 1));
    const histogram = cat(str(1, 'h'), len(9, len(1, badPoint), len(1, badPoint), vint(2, 2)));
    const sum = cat(str(1, 's'), len(7, len(1, numberPoint(1)), vint(2, 2), vint(3, 1)));
    const dropped = resourceMetrics(droppedId, gauge('g', numberPoint(1), numberPoint(2)), histogram, sum, str(1, ''));
    const parsed = parseRequest('metrics', request(dropped), mayKeep);
    assert.deepEqual([parsed.batch.resources[0]!.itemCount, parsed.batch.resources[0]!.unchecked, parsed.rejected], [5, true, 0]);
    assert.throws(() => parseRequest('metrics', request(dropped)), /histogram\.data_points\[0\]\.count: wire type 0, expected 1/);
  });

  void test('checkDeferredBlock checks a counted block when something keeps it after all', () => {
    const valid = parseRequest('traces', request(resourceSpans(droppedId, scopeSpans(rawSpan(), rawSpan()))), mayKeep).batch.resources[0]!;
    assert.equal(valid.unchecked, true);
    const checked = checkDeferredBlock('traces', valid);
    assert.deepEqual([checked.itemCount, checked.unchecked, checked.bytes], [2, false, valid.bytes]);
    const malformed = parseRequest('traces', request(resourceSpans(droppedId, scopeSpans(badName))), mayKeep).batch.resources[0]!;
    assert.throws(() => checkDeferredBlock('traces', malformed), (err: unknown) => err instanceof WireFormatError && /spans\[0\]\.name: string is not valid UTF-8/.test(err.message));
    const invalid = parseRequest('traces', request(resourceSpans(droppedId, scopeSpans(rawSpan(), noTraceId))), mayKeep).batch.resources[0]!;
    assert.throws(() => checkDeferredBlock('traces', invalid), /spans\[1\]: trace_id is missing/);
  });
});
