import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import * as protobuf from 'protobufjs';
import { TEMPORALITY_CUMULATIVE, TEMPORALITY_DELTA } from '../../src/connectors/metrics-output';
import { PROTO_FILES } from '../../src/pdata/codec';
import { OTLP_FIELD_TABLES, fieldOf } from '../../src/pdata/fields';
import { SCANNER_TABLES } from '../../src/pdata/scan';
import {
  AnyValueSpec,
  ExponentialHistogramDataPointSpec,
  HistogramDataPointSpec,
  KIND_BYTES,
  KIND_I32,
  KIND_I64,
  KIND_MSG,
  KIND_PACKED_I64,
  KIND_PACKED_VARINT,
  KIND_STRING,
  KIND_VARINT,
  NumberDataPointSpec,
  KeyValueSpec,
  SpanSpec,
  SummaryDataPointSpec,
  checkMessage,
  isPlainKeyValue,
  type MessageSpec,
} from '../../src/pdata/schema';
import {
  SPAN_KIND_CLIENT,
  SPAN_KIND_CONSUMER,
  SPAN_KIND_NAMES,
  SPAN_KIND_PRODUCER,
  SPAN_KIND_SERVER,
  STATUS_CODE_ERROR,
  STATUS_CODE_NAMES,
} from '../../src/pdata/spans';
import { WIRE_I32, WIRE_I64, WIRE_LEN, WIRE_VARINT, WireFormatError } from '../../src/pdata/wire';
import { seededRandom } from '../helpers/random';

// The wire scanner's tables (src/pdata/schema.ts, scan.ts) against the published .proto files in
// proto/, through protobufjs reflection: every field the scanner checks has that number, name and
// wire type upstream, and every upstream field it does not check is listed here with the reason.

const PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');

function loadSnakeCase(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
  root.loadSync(PROTO_FILES, { keepCase: true });
  root.resolveAll();
  return root;
}

const COMMON = 'opentelemetry.proto.common.v1';
const TRACE = 'opentelemetry.proto.trace.v1';
const METRICS = 'opentelemetry.proto.metrics.v1';

/** The upstream message(s) each scanner spec stands for. */
const UPSTREAM: Record<string, string[]> = {
  AnyValue: [`${COMMON}.AnyValue`],
  KeyValue: [`${COMMON}.KeyValue`],
  ArrayValue: [`${COMMON}.ArrayValue`],
  KeyValueList: [`${COMMON}.KeyValueList`],
  InstrumentationScope: [`${COMMON}.InstrumentationScope`],
  EntityRef: [`${COMMON}.EntityRef`],
  Resource: ['opentelemetry.proto.resource.v1.Resource'],
  // ScopeSpans / ScopeMetrics without their items (field 2, walked by the scanner itself).
  Scope: [`${TRACE}.ScopeSpans`, `${METRICS}.ScopeMetrics`],
  Span: [`${TRACE}.Span`],
  Event: [`${TRACE}.Span.Event`],
  Link: [`${TRACE}.Span.Link`],
  Status: [`${TRACE}.Status`],
  Metric: [`${METRICS}.Metric`],
  Exemplar: [`${METRICS}.Exemplar`],
  NumberDataPoint: [`${METRICS}.NumberDataPoint`],
  HistogramDataPoint: [`${METRICS}.HistogramDataPoint`],
  ExponentialHistogramDataPoint: [`${METRICS}.ExponentialHistogramDataPoint`],
  Buckets: [`${METRICS}.ExponentialHistogramDataPoint.Buckets`],
  SummaryDataPoint: [`${METRICS}.SummaryDataPoint`],
  ValueAtQuantile: [`${METRICS}.SummaryDataPoint.ValueAtQuantile`],
};

/** Upstream fields the scanner skips unchecked, as unknown fields are skipped: each with why. */
const NOT_CHECKED: Record<string, string> = {
  [`${TRACE}.ScopeSpans.spans`]: 'items: walked by scanScope, one span at a time',
  [`${METRICS}.ScopeMetrics.metrics`]: 'items: walked by scanScope, one metric at a time',
  [`${METRICS}.Metric.gauge`]: 'data: METRIC_DATA',
  [`${METRICS}.Metric.sum`]: 'data: METRIC_DATA',
  [`${METRICS}.Metric.histogram`]: 'data: METRIC_DATA',
  [`${METRICS}.Metric.exponential_histogram`]: 'data: METRIC_DATA',
  [`${METRICS}.Metric.summary`]: 'data: METRIC_DATA',
};

const VARINT_TYPES = new Set(['int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'bool']);
const I64_TYPES = new Set(['fixed64', 'sfixed64', 'double']);
const I32_TYPES = new Set(['fixed32', 'sfixed32', 'float']);

/** Why a scanner field kind does not fit an upstream field, or undefined when it does. */
function kindMismatch(kind: number, field: protobuf.Field): string | undefined {
  const t = field.type;
  const isEnum = field.resolvedType instanceof protobuf.Enum;
  const isMessage = field.resolvedType instanceof protobuf.Type;
  const ok = (() => {
    switch (kind) {
      case KIND_MSG:
        return isMessage;
      case KIND_STRING:
        return t === 'string';
      case KIND_BYTES:
        return t === 'bytes';
      case KIND_VARINT:
        return VARINT_TYPES.has(t) || isEnum;
      case KIND_I64:
        return I64_TYPES.has(t) && !field.repeated;
      case KIND_I32:
        return I32_TYPES.has(t) && !field.repeated;
      case KIND_PACKED_I64:
        return I64_TYPES.has(t) && field.repeated;
      case KIND_PACKED_VARINT:
        return (VARINT_TYPES.has(t) || isEnum) && field.repeated;
      default:
        return false;
    }
  })();
  return ok ? undefined : `scanner kind ${kind} but upstream ${field.repeated ? 'repeated ' : ''}${t}`;
}

function reachableSpecs(): Map<string, MessageSpec> {
  const found = new Map<string, MessageSpec>();
  const roots: MessageSpec[] = [
    AnyValueSpec,
    SpanSpec,
    NumberDataPointSpec,
    HistogramDataPointSpec,
    ExponentialHistogramDataPointSpec,
    SummaryDataPointSpec,
    SCANNER_TABLES.ResourceSpec,
    SCANNER_TABLES.ScopeHolder,
    SCANNER_TABLES.MetricSpec,
  ];
  const walk = (spec: MessageSpec): void => {
    if (found.has(spec.name)) return;
    found.set(spec.name, spec);
    for (const f of spec.fields) if (f?.message) walk(f.message);
  };
  roots.forEach(walk);
  return found;
}

void describe('OTLP schema: the scanner tables against proto/', () => {
  const root = loadSnakeCase();
  const specs = reachableSpecs();

  void test('proto/ records the opentelemetry-proto release it was taken from', () => {
    for (const file of PROTO_FILES.filter((f) => f.startsWith('opentelemetry/'))) {
      const header = fs.readFileSync(path.join(PROTO_DIR, file), 'utf8').split('\n')[0]!;
      assert.match(header, /^\/\/ opentelemetry-proto v\d+\.\d+\.\d+, /, file);
    }
  });

  void test('every scanner spec stands for an upstream message', () => {
    assert.deepEqual([...specs.keys()].sort(), Object.keys(UPSTREAM).sort());
  });

  for (const [name, upstreamNames] of Object.entries(UPSTREAM)) {
    for (const upstreamName of upstreamNames) {
      void test(`${name} ↔ ${upstreamName}: field numbers, names and wire types`, () => {
        const spec = specs.get(name);
        assert.ok(spec, `no scanner spec ${name}`);
        const type = root.lookupType(upstreamName);
        const problems: string[] = [];
        spec.fields.forEach((f, number) => {
          if (f === undefined) return;
          const upstream = type.fieldsById[number];
          if (!upstream) {
            problems.push(`field ${number} (${f.name}) does not exist upstream`);
            return;
          }
          if (upstream.name !== f.name) problems.push(`field ${number}: scanner says ${f.name}, upstream ${upstream.name}`);
          const mismatch = kindMismatch(f.kind, upstream);
          if (mismatch) problems.push(`field ${number} (${f.name}): ${mismatch}`);
          if (f.kind === KIND_MSG && f.message) {
            const target = UPSTREAM[f.message.name] ?? [];
            if (!target.includes((upstream.resolvedType as protobuf.Type).fullName.slice(1))) {
              problems.push(`field ${number} (${f.name}): scanner checks it as ${f.message.name}, upstream type ${upstream.resolvedType!.fullName}`);
            }
          }
        });
        for (const upstream of type.fieldsArray) {
          if (spec.fields[upstream.id] === undefined && NOT_CHECKED[`${upstreamName}.${upstream.name}`] === undefined) {
            problems.push(`upstream field ${upstream.id} (${upstream.name}) is neither checked nor listed in NOT_CHECKED`);
          }
        }
        assert.deepEqual(problems, []);
      });
    }
  }

  void test('METRIC_DATA: each data field holds the point type the scanner checks', () => {
    const metric = root.lookupType(`${METRICS}.Metric`);
    for (const [number, data] of Object.entries(SCANNER_TABLES.METRIC_DATA)) {
      const upstream = metric.fieldsById[Number(number)];
      assert.ok(upstream, `Metric field ${number}`);
      assert.equal(upstream.name, data.name);
      const holder = upstream.resolvedType as protobuf.Type;
      const points = holder.fields.data_points;
      assert.ok(points, `${holder.name}.data_points`);
      assert.equal(points.id, 1);
      assert.deepEqual(UPSTREAM[data.point.name], [(points.resolvedType as protobuf.Type).fullName.slice(1)]);
    }
  });
});

/** The upstream message(s) each table of src/pdata/fields.ts stands for: upstream names where they differ, fields it lacks. */
interface TableUpstream {
  readonly message: string;
  readonly names?: Record<string, string>;
  readonly absent?: readonly string[];
}

const COLLECTOR = 'opentelemetry.proto.collector';
const FIELD_TABLE_UPSTREAM: Record<keyof typeof OTLP_FIELD_TABLES, readonly TableUpstream[]> = {
  EXPORT_REQUEST: [
    { message: `${COLLECTOR}.trace.v1.ExportTraceServiceRequest`, names: { resources: 'resource_spans' } },
    { message: `${COLLECTOR}.metrics.v1.ExportMetricsServiceRequest`, names: { resources: 'resource_metrics' } },
  ],
  RESOURCE_ITEMS: [
    { message: `${TRACE}.ResourceSpans`, names: { scopes: 'scope_spans' } },
    { message: `${METRICS}.ResourceMetrics`, names: { scopes: 'scope_metrics' } },
  ],
  SCOPE_ITEMS: [
    { message: `${TRACE}.ScopeSpans`, names: { items: 'spans' } },
    { message: `${METRICS}.ScopeMetrics`, names: { items: 'metrics' } },
  ],
  RESOURCE: [{ message: 'opentelemetry.proto.resource.v1.Resource' }],
  INSTRUMENTATION_SCOPE: [{ message: `${COMMON}.InstrumentationScope` }],
  SPAN: [{ message: `${TRACE}.Span` }],
  SPAN_EVENT: [{ message: `${TRACE}.Span.Event` }],
  STATUS: [{ message: `${TRACE}.Status` }],
  KEY_VALUE: [{ message: `${COMMON}.KeyValue` }],
  ANY_VALUE: [{ message: `${COMMON}.AnyValue` }],
  ANY_VALUE_STRINDEX: [{ message: `${COMMON}.AnyValue` }],
  VALUES: [{ message: `${COMMON}.ArrayValue` }, { message: `${COMMON}.KeyValueList` }],
  METRIC: [{ message: `${METRICS}.Metric` }],
  POINTS_HOLDER: [
    { message: `${METRICS}.Sum` },
    { message: `${METRICS}.Histogram`, absent: ['is_monotonic'] },
    { message: `${METRICS}.ExponentialHistogram`, absent: ['is_monotonic'] },
    { message: `${METRICS}.Gauge`, absent: ['aggregation_temporality', 'is_monotonic'] },
    { message: `${METRICS}.Summary`, absent: ['aggregation_temporality', 'is_monotonic'] },
  ],
  NUMBER_DATA_POINT: [{ message: `${METRICS}.NumberDataPoint` }],
  HISTOGRAM_DATA_POINT: [{ message: `${METRICS}.HistogramDataPoint` }],
  EXPONENTIAL_HISTOGRAM_DATA_POINT: [{ message: `${METRICS}.ExponentialHistogramDataPoint` }],
  SUMMARY_DATA_POINT: [{ message: `${METRICS}.SummaryDataPoint` }],
};

/** The wire type an upstream field is written with (proto3: repeated scalars packed). */
function upstreamWireType(field: protobuf.Field): number {
  if (field.resolvedType instanceof protobuf.Type || field.type === 'string' || field.type === 'bytes' || field.repeated) return WIRE_LEN;
  if (VARINT_TYPES.has(field.type) || field.resolvedType instanceof protobuf.Enum) return WIRE_VARINT;
  if (I64_TYPES.has(field.type)) return WIRE_I64;
  if (I32_TYPES.has(field.type)) return WIRE_I32;
  throw new Error(`no wire type for ${field.fullName} (${field.type})`);
}

void describe('OTLP schema: the readers\' field tags (src/pdata/fields.ts) against proto/', () => {
  const root = loadSnakeCase();

  void test('every table stands for upstream messages', () => {
    assert.deepEqual(Object.keys(FIELD_TABLE_UPSTREAM).sort(), Object.keys(OTLP_FIELD_TABLES).sort());
  });

  for (const [tableName, table] of Object.entries(OTLP_FIELD_TABLES) as [keyof typeof OTLP_FIELD_TABLES, Record<string, number>][]) {
    for (const { message, names = {}, absent = [] } of FIELD_TABLE_UPSTREAM[tableName]) {
      void test(`${tableName} ↔ ${message}: name, number and wire type of each tag`, () => {
        const type = root.lookupType(message);
        const problems: string[] = [];
        for (const [key, tag] of Object.entries(table)) {
          const name = names[key] ?? key;
          const upstream = type.fields[name];
          if (absent.includes(name)) {
            if (upstream) problems.push(`${name} is listed as absent but exists upstream (field ${upstream.id})`);
            continue;
          }
          if (!upstream) {
            problems.push(`${key}: no field ${name} upstream`);
            continue;
          }
          if (fieldOf(tag) !== upstream.id) problems.push(`${key}: field number ${fieldOf(tag)}, upstream ${upstream.id}`);
          if ((tag & 7) !== upstreamWireType(upstream)) problems.push(`${key}: wire type ${tag & 7}, upstream ${upstreamWireType(upstream)} (${upstream.type})`);
        }
        assert.deepEqual(problems, []);
      });
    }
  }

  void test('enum values the readers name: span kinds, status codes, aggregation temporality', () => {
    const kinds = root.lookupEnum(`${TRACE}.Span.SpanKind`);
    assert.deepEqual([...SPAN_KIND_NAMES], SPAN_KIND_NAMES.map((_n, i) => kinds.valuesById[i]));
    assert.equal(Object.keys(kinds.values).length, SPAN_KIND_NAMES.length);
    assert.deepEqual(
      [SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER],
      ['SPAN_KIND_SERVER', 'SPAN_KIND_CLIENT', 'SPAN_KIND_PRODUCER', 'SPAN_KIND_CONSUMER'].map((n) => kinds.values[n]),
    );
    const codes = root.lookupEnum(`${TRACE}.Status.StatusCode`);
    assert.deepEqual([...STATUS_CODE_NAMES], STATUS_CODE_NAMES.map((_n, i) => codes.valuesById[i]));
    assert.equal(Object.keys(codes.values).length, STATUS_CODE_NAMES.length);
    assert.equal(STATUS_CODE_ERROR, codes.values.STATUS_CODE_ERROR);
    const temporality = root.lookupEnum(`${METRICS}.AggregationTemporality`);
    assert.equal(TEMPORALITY_DELTA, temporality.values.AGGREGATION_TEMPORALITY_DELTA);
    assert.equal(TEMPORALITY_CUMULATIVE, temporality.values.AGGREGATION_TEMPORALITY_CUMULATIVE);
  });
});

// Every field tag a reader compares with comes from src/pdata/fields.ts, so the test above checks
// it: tag arithmetic written out elsewhere (`3 * 8 + WIRE_LEN`, `field * 8 + WIRE_LEN`, `<< 3`) is
// refused. Only wire.ts (the codec itself) and fields.ts (where the tags are made) compute tags;
// there is no allowlist, and there must not be one again.
const SRC_DIR = path.resolve(__dirname, '..', '..', '..', 'src');
const TAG_ARITHMETIC = /\b\d+ \* 8\b|[\w)] \* 8 \+ WIRE_|<< 3\b/g;
const MAKES_TAGS = new Set(['pdata/fields.ts', 'pdata/wire.ts']);

function sourceFiles(dir: string, rel = ''): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const name = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) return sourceFiles(path.join(dir, entry.name), name);
    return entry.name.endsWith('.ts') ? [name] : [];
  });
}

void describe('OTLP schema: no field tag written as a number outside src/pdata/fields.ts', () => {
  void test('tag arithmetic only where the tags are made', () => {
    const lines: string[] = [];
    for (const file of sourceFiles(SRC_DIR)) {
      if (MAKES_TAGS.has(file)) continue;
      const text = fs.readFileSync(path.join(SRC_DIR, file), 'utf8');
      text.split('\n').forEach((line, i) => {
        if (line.match(TAG_ARITHMETIC)) lines.push(`src/${file}:${i + 1}: ${line.trim()}`);
      });
    }
    assert.deepEqual(lines, [], 'name these tags in src/pdata/fields.ts (the schema test checks them against proto/)');
  });
});

// isPlainKeyValue is checkValue's shortcut for the commonest message; on false the general checker
// takes over. So the one property that matters: it never accepts what the general checker refuses.
void describe('OTLP schema: the plain KeyValue shortcut', () => {
  const varint = (n: number): number[] => {
    const out: number[] = [];
    while (n >= 0x80) {
      out.push((n % 0x80) | 0x80);
      n = Math.floor(n / 0x80);
    }
    out.push(n);
    return out;
  };
  const field = (number: number, wireType: number, payload: number[]): number[] =>
    wireType === WIRE_LEN ? [...varint(number * 8 + wireType), ...varint(payload.length), ...payload] : [...varint(number * 8 + wireType), ...payload];
  const ascii = (text: string): number[] => [...Buffer.from(text, 'latin1')];
  const STRINGS: number[][] = [ascii('http.request.method'), ascii(''), ascii('x'.repeat(200)), [...Buffer.from('größe')], [0xc3], [0xff, 0x41], [0xed, 0xa0, 0x80]];

  /** A KeyValue built from valid and invalid pieces, then possibly damaged. */
  function sample(random: () => number): Buffer {
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const anyValue = (): number[] => {
      switch (Math.floor(random() * 12)) {
        case 0: return field(1, WIRE_LEN, pick(STRINGS));
        case 1: return field(2, WIRE_VARINT, varint(Math.floor(random() * 2)));
        case 2: return field(3, WIRE_VARINT, varint(Math.floor(random() * 2 ** 40)));
        case 3: return field(4, WIRE_I64, [1, 2, 3, 4, 5, 6, 7, 8]);
        case 4: return field(5, WIRE_LEN, field(1, WIRE_LEN, field(3, WIRE_VARINT, [7])));
        case 5: return field(7, WIRE_LEN, [0xff, 0x00]);
        case 6: return field(8, WIRE_VARINT, varint(3));
        case 7: return field(4, WIRE_VARINT, [1]); // wrong wire type for double_value
        case 8: return field(4, WIRE_I64, [1, 2, 3, 4, 5, 6, 7]); // a double one byte short
        case 9: return field(3, WIRE_VARINT, [...new Array<number>(9).fill(0x80), 1]); // ten bytes: the longest varint
        case 10: return field(3, WIRE_VARINT, [...new Array<number>(10).fill(0x80), 1]); // eleven: too long
        default: return field(1, WIRE_I64, [1, 2, 3, 4, 5, 6, 7, 8]); // wrong wire type for string_value
      }
    };
    const parts: number[][] = [];
    for (let n = Math.floor(random() * 4); n > 0; n--) {
      const r = random();
      if (r < 0.4) parts.push(field(1, WIRE_LEN, pick(STRINGS)));
      else if (r < 0.8) parts.push(field(2, WIRE_LEN, random() < 0.9 ? anyValue() : [...anyValue(), ...anyValue()]));
      else if (r < 0.9) parts.push(field(3, WIRE_VARINT, varint(5)));
      else parts.push(field(9, WIRE_VARINT, [1])); // unknown field: the general checker skips it
    }
    const bytes = parts.flat();
    const damage = random();
    if (bytes.length === 0) return Buffer.alloc(0);
    if (damage < 0.1) bytes.length = Math.floor(random() * bytes.length);
    else if (damage < 0.2) bytes.length -= 1; // the last length now runs one byte past the end
    else if (damage < 0.45) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
    return Buffer.from(bytes);
  }

  void test('it accepts only KeyValues the general checker accepts, over a seeded corpus', () => {
    const random = seededRandom(0x5eed);
    let shortcut = 0;
    let general = 0;
    let refused = 0;
    const wrong: string[] = [];
    for (let i = 0; i < 50_000; i++) {
      const bytes = sample(random);
      let error: WireFormatError | undefined;
      try {
        checkMessage(bytes, 0, bytes.length, KeyValueSpec);
      } catch (err) {
        if (!(err instanceof WireFormatError)) throw err;
        error = err;
      }
      if (isPlainKeyValue(bytes, 0, bytes.length)) {
        shortcut++;
        if (error !== undefined && wrong.length < 5) wrong.push(`${bytes.toString('hex')}: ${error.message}`);
      } else if (error === undefined) {
        general++;
      } else {
        refused++;
      }
    }
    assert.deepEqual(wrong, []);
    // Each of the three outcomes occurs often, so the property above was put to the test.
    for (const [name, count] of Object.entries({ shortcut, general, refused })) assert.ok(count > 5000, `${name}: ${count}`);
  });

  void test('a span attribute the shortcut passes over is still checked, and worded, by the general checker', () => {
    const span = (key: number[], value: number[]) => Buffer.from(field(9, WIRE_LEN, [...field(1, WIRE_LEN, key), ...field(2, WIRE_LEN, value)]));
    const utf8Key = span([...Buffer.from('größe')], field(3, WIRE_VARINT, [7]));
    assert.equal(isPlainKeyValue(utf8Key, 2, utf8Key.length), false);
    checkMessage(utf8Key, 0, utf8Key.length, SpanSpec);
    const badValue = span(ascii('k'), field(1, WIRE_LEN, [0xc3, 0x28]));
    assert.throws(() => checkMessage(badValue, 0, badValue.length, SpanSpec), /attributes\.value\.string_value.*not valid UTF-8/);
  });

  void test('it refuses, and the general checker refuses, what the corpus does not reach', () => {
    const longKey = [0x0a, 0x80, 0x80, 0x01, ...new Array<number>(16_383).fill(0x61)]; // a 3-byte length, one byte short
    const cases: Record<string, number[]> = {
      'a three-byte length running one byte past the end': longKey,
      'key_strindex sent as LEN': field(3, WIRE_LEN, [0x41]),
      'string_value_strindex sent as LEN': field(2, WIRE_LEN, field(8, WIRE_LEN, [0x41])),
      'a kvlist value with an invalid key inside': field(2, WIRE_LEN, field(6, WIRE_LEN, field(1, WIRE_LEN, field(1, WIRE_LEN, [0xc3, 0x28])))),
      'an array value with an invalid string inside': field(2, WIRE_LEN, field(5, WIRE_LEN, field(1, WIRE_LEN, field(1, WIRE_LEN, [0xff])))),
    };
    for (const [name, bytes] of Object.entries(cases)) {
      const buf = Buffer.from(bytes);
      assert.equal(isPlainKeyValue(buf, 0, buf.length), false, name);
      assert.throws(() => checkMessage(buf, 0, buf.length, KeyValueSpec), WireFormatError, name);
    }
    // Well formed but not plain: left to the general checker, which accepts them.
    const notPlain = [field(2, WIRE_LEN, field(6, WIRE_LEN, [])), [0x0a, 0x80, 0x80, 0x01, ...new Array<number>(16_384).fill(0x61)]];
    for (const bytes of notPlain) {
      const buf = Buffer.from(bytes);
      assert.equal(isPlainKeyValue(buf, 0, buf.length), false);
      checkMessage(buf, 0, buf.length, KeyValueSpec);
    }
  });
});
