import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { parseProbabilisticSamplerConfig, type ProbabilisticSamplerConfig } from '../../../src/processors/probabilisticsampler/config';
import { ProbabilisticSamplerProcessor, parseGoFloat } from '../../../src/processors/probabilisticsampler/probabilistic-sampler';
import { Priority, Sampler } from '../../../src/processors/probabilisticsampler/sampler';
import { parseTValue, probability, probabilityToThreshold, tValue } from '../../../src/pdata/sampling-threshold';
import { parseTraceState } from '../../../src/pdata/tracestate';
import { Batch } from '../../../src/pdata/batch';
import { types } from '../../../src/pdata/codec';
import { parseRequest } from '../../../src/pdata/scan';
import { SelfTelemetry } from '../../../src/service/telemetry';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../../helpers/obi';
import { Capture, configErrors, parseWith, testSettings } from '../../helpers/components';
import { seededRandom } from '../../helpers/random';
import { corpusRequests } from './corpus';

const parse = (raw: unknown): ProbabilisticSamplerConfig => parseWith(parseProbabilisticSamplerConfig, raw, 'processors::probabilistic_sampler');
const errors = (raw: unknown): string[] => configErrors(parseProbabilisticSamplerConfig, raw, 'processors::probabilistic_sampler');

/** A trace id whose last 7 bytes (its W3C randomness) are `tail` (14 hex digits). */
const traceId = (tail: string): Buffer => Buffer.from(`010203040506070809${tail}`, 'hex');

function decide(config: Record<string, unknown>, id: Buffer, traceState = '', priority = Priority.Defer) {
  return { ...new Sampler(parse(config)).decide(id, 0, id.length, traceState, priority) };
}

/** Runs one request through a processor; returns what it passed on (decoded) and its telemetry. */
async function run(config: Record<string, unknown>, body: Buffer) {
  const telemetry = new SelfTelemetry();
  const next = new Capture();
  const processor = new ProbabilisticSamplerProcessor(testSettings('probabilistic_sampler', telemetry), parse(config), next);
  const input = parseRequest('traces', body).batch;
  await processor.consume(input);
  return { input, next, telemetry };
}

type DecodedSpan = { spanId: string; traceId: string; traceState?: string; attributes?: { key: string; value: Record<string, unknown> }[] };
type DecodedRequest = { resourceSpans?: { resource?: unknown; scopeSpans?: { scope?: unknown; spans?: DecodedSpan[] }[] }[] };

function decoded(batch: Batch | undefined): DecodedRequest {
  if (!batch) return {};
  const type = types.ExportTraceServiceRequest;
  return type.toObject(type.decode(batch.toRequestBytes()), { longs: String, bytes: String });
}

void describe('probabilistic_sampler config', () => {
  void test('defaults as the Collector: 0 %, mode unset (hash_seed), fail_closed, precision 4, attribute_source traceID', () => {
    assert.deepEqual(parse({}), {
      samplingPercentage: 0,
      hashSeed: 0,
      mode: '',
      failClosed: true,
      samplingPrecision: 4,
      attributeSource: 'traceID',
      fromAttribute: '',
      samplingPriority: '',
    });
    assert.equal(new Sampler(parse({ sampling_percentage: 10 })).mode, 'hash_seed');
  });

  void test('the percentage is held as a float32, as the Collector reads it', () => {
    assert.equal(parse({ sampling_percentage: 33.3 }).samplingPercentage, Math.fround(33.3));
    assert.deepEqual(errors({ sampling_percentage: 150 }), [], 'above 100 means 100');
  });

  void test('the Collector`s validation messages, each under its key', () => {
    const at = 'processors::probabilistic_sampler';
    assert.deepEqual(errors({ sampling_percentage: -1 }), [`${at}::sampling_percentage: sampling rate is negative: -1.000000%`]);
    assert.deepEqual(errors({ sampling_percentage: 1e-20 }), [`${at}::sampling_percentage: sampling rate is too small: 1e-20%`]);
    assert.deepEqual(errors({ sampling_percentage: 1e39 }), [`${at}::sampling_percentage: sampling rate is invalid: +Inf%`]);
    assert.deepEqual(errors({ sampling_percentage: 'ten' }), [`${at}::sampling_percentage: expected a number, got "ten"`]);
    assert.deepEqual(errors({ sampling_percentage: 10, sampling_precision: 0 }), [`${at}::sampling_precision: invalid sampling precision: 0`]);
    assert.deepEqual(errors({ sampling_percentage: 10, sampling_precision: 15 }), [`${at}::sampling_precision: sampling precision is too great, should be <= 14: 15`]);
    assert.deepEqual(errors({ mode: 'random' }), [`${at}::mode: unsupported sampler mode "random" (expected hash_seed, proportional, equalizing)`]);
    assert.deepEqual(errors({ attribute_source: 'span' }), [`${at}::attribute_source: invalid attribute source: span. Expected: traceID or record`]);
    assert.deepEqual(errors({ hash_seed: -1 }), [`${at}::hash_seed: must be between 0 and 4294967295, got -1`]);
    assert.deepEqual(errors({ percentage: 10 }).length, 1, 'unknown keys are reported');
  });

  void test('logs-only keys and a negative precision are accepted, as the Collector accepts them for traces', () => {
    assert.deepEqual(errors({ sampling_percentage: 10, attribute_source: 'record', from_attribute: 'id', sampling_priority: 'prio', sampling_precision: -1 }), []);
  });
});

void describe('probabilistic_sampler arithmetic (pkg/sampling)', () => {
  void test('probability -> threshold with precision, values taken from the Collector`s library', () => {
    const cases: [number, number, string][] = [
      [0.1, 4, 'e666'],
      [0.1, 14, 'e6666666666666'],
      [0.01, 4, 'fd70a'],
      [0.001, 1, 'ffc'],
      [1 / 3, 4, 'aaab'],
      [0.999, 4, '004189'],
      [1e-10, 4, 'ffffffff920d'],
      [0.5, 4, '8'],
      [Math.fround(33.3) / 100, 2, 'ab'],
      [0.01, -1, ''],
      [0.5, -1, '0'],
    ];
    for (const [p, precision, expected] of cases) assert.equal(tValue(probabilityToThreshold(p, precision)!), expected, `${p} at ${precision}`);
    assert.equal(probabilityToThreshold(2 ** -57, 4), undefined);
    assert.equal(probability(parseTValue('c')!), 0.25);
  });

  void test('tracestate parsing keeps what the Collector keeps', () => {
    assert.equal(parseTraceState(' ot=th:c;x:y , congo=t61rcWkgMzE,').state.serialize(), 'ot=th:c;x:y,congo=t61rcWkgMzE');
    assert.equal(parseTraceState('vendor=1,ot=rv:00000000000001').state.serialize(), 'ot=rv:00000000000001,vendor=1');
    assert.equal(parseTraceState('ot=th:zz').error !== undefined, true);
    assert.equal(parseTraceState('ot=th:8;').error !== undefined, true);
    assert.equal(parseTraceState('Bad=1').error !== undefined, true);
    assert.equal(parseTraceState(Array.from({ length: 31 }, (_, i) => `k${i}=v`).join(',')).error, undefined);
    assert.equal(parseTraceState(Array.from({ length: 32 }, (_, i) => `k${i}=v`).join(',')).error, 'invalid tracestate size', 'a 32nd member is refused (the Collector counts from 1)');
  });

  void test('a string sampling.priority is read as Go`s ParseFloat reads it', () => {
    const cases: [string, number | undefined][] = [
      ['1', 1],
      ['0', 0],
      [' 1', undefined],
      ['1_000', 1000],
      ['1__0', undefined],
      ['_1', undefined],
      ['0x1p-2', 0.25],
      ['0x10', undefined],
      ['inf', Infinity],
      ['infin', undefined],
      ['+nan', undefined],
      ['1e400', undefined],
      ['1e-400', 0],
      ['.5', 0.5],
      ['5.', 5],
      ['.', undefined],
      ['1e', undefined],
      ['0b1', undefined],
      ['0x_1p0', 1],
      ['+.5e1', 5],
    ];
    for (const [text, expected] of cases) assert.equal(parseGoFloat(text), expected, text);
    assert.ok(Number.isNaN(parseGoFloat('NaN')));
  });
});

void describe('probabilistic_sampler decisions', () => {
  const top = traceId('ffffffffffffff');
  const bottom = traceId('00000000000000');

  void test('hash_seed: FNV-1a of the seed and trace id, 14-bit buckets; a kept span gets its rv and th', () => {
    // Checked against Go's hash/fnv: FNV-1a(00000000 c4e9...7bfb) = a76cc22d.
    const id = Buffer.from('c4e922146700fb6d1507f49eed4d7bfb', 'hex');
    assert.deepEqual(decide({ sampling_percentage: 10 }, id), { sampled: true, policy: 'trace_id_hash', traceState: 'ot=rv:f74829d176c22d;th:e668' });
    assert.equal(decide({ sampling_percentage: 100 }, id).traceState, 'ot=rv:f74829d176c22d;th:0');
    assert.notEqual(decide({ sampling_percentage: 100, hash_seed: 1 }, id).traceState, 'ot=rv:f74829d176c22d;th:0', 'the seed changes the hash');
    // An explicit th or rv belongs to the consistent modes: an error, decided by fail_closed, tracestate left alone.
    assert.deepEqual(decide({ sampling_percentage: 100 }, id, 'ot=th:8'), { sampled: false, policy: 'trace_id_hash', traceState: undefined });
    assert.deepEqual(decide({ sampling_percentage: 10, fail_closed: false }, id, 'ot=rv:00000000000000'), { sampled: true, policy: 'trace_id_hash', traceState: undefined });
  });

  void test('proportional: the probability multiplies the arriving one; randomness from the last 7 bytes or rv', () => {
    assert.deepEqual(decide({ sampling_percentage: 10, mode: 'proportional' }, top), { sampled: true, policy: 'trace_id_w3c', traceState: 'ot=th:e666' });
    assert.deepEqual(decide({ sampling_percentage: 10, mode: 'proportional' }, top, 'ot=th:8'), { sampled: true, policy: 'trace_id_w3c', traceState: 'ot=th:f3333' });
    assert.equal(decide({ sampling_percentage: 10, mode: 'proportional' }, bottom).sampled, false);
    // rv wins over the trace id, in its own case.
    assert.deepEqual(decide({ sampling_percentage: 10, mode: 'proportional' }, bottom, 'ot=rv:FFFFFFFFFFFFFF'), {
      sampled: true,
      policy: 'sampling_randomness',
      traceState: 'ot=rv:FFFFFFFFFFFFFF;th:e666',
    });
  });

  void test('equalizing: raises the threshold to the configured one, never lowers an arriving one', () => {
    assert.deepEqual(decide({ sampling_percentage: 25, mode: 'equalizing' }, top, 'ot=th:8'), { sampled: true, policy: 'trace_id_w3c', traceState: 'ot=th:c' });
    assert.deepEqual(decide({ sampling_percentage: 25, mode: 'equalizing' }, top, 'ot=th:f,vendor=x'), { sampled: true, policy: 'trace_id_w3c', traceState: 'ot=th:f,vendor=x' });
    assert.equal(decide({ sampling_percentage: 25, mode: 'equalizing' }, traceId('b0000000000000'), 'ot=th:8').sampled, false);
  });

  void test('an arriving th its randomness contradicts: dropped with fail_closed, else kept with th:0', () => {
    const id = traceId('10000000000000');
    assert.equal(decide({ sampling_percentage: 50, mode: 'equalizing' }, id, 'ot=th:c').sampled, false);
    assert.deepEqual(decide({ sampling_percentage: 50, mode: 'equalizing', fail_closed: false }, id, 'ot=th:c'), { sampled: true, policy: 'trace_id_w3c', traceState: 'ot=th:0' });
    // A malformed tracestate: no randomness at all.
    assert.deepEqual(decide({ sampling_percentage: 50, mode: 'proportional', fail_closed: false }, id, 'ot=th:zz'), { sampled: true, policy: 'missing_randomness', traceState: undefined });
    assert.deepEqual(decide({ sampling_percentage: 50, mode: 'proportional' }, id, 'ot=th:zz'), { sampled: false, policy: 'missing_randomness', traceState: undefined });
  });

  void test('sampling.priority: 0 drops, above 0 keeps with th:0, whatever the percentage; negative defers', () => {
    assert.deepEqual(decide({ sampling_percentage: 0 }, bottom, '', Priority.MustSample), { sampled: true, policy: 'sampling_priority', traceState: 'ot=th:0' });
    assert.deepEqual(decide({ sampling_percentage: 100, mode: 'proportional' }, top, '', Priority.DoNotSample), { sampled: false, policy: 'sampling_priority', traceState: undefined });
    // A kept span's lower probability is not raised again by the priority.
    assert.deepEqual(decide({ sampling_percentage: 10, mode: 'equalizing' }, top, 'ot=th:8', Priority.MustSample), { sampled: true, policy: 'sampling_priority', traceState: 'ot=th:8' });
  });

  void test('the priority attribute is read from the span`s bytes, every value type', async () => {
    const spans = [
      { v: { intValue: 0 }, kept: false },
      { v: { intValue: 3 }, kept: true },
      { v: { doubleValue: 0.5 }, kept: true },
      { v: { stringValue: '0' }, kept: false },
      { v: { stringValue: '2' }, kept: true },
      { v: { boolValue: true }, kept: false },
      { v: { intValue: -1 }, kept: false },
    ].map(({ v, kept }) => ({ span: obiSpan({ traceId: bottom, attributes: [{ key: 'other', value: { intValue: 1 } }, { key: 'sampling.priority', value: v }] }), kept }));
    const body = encodeTraces([obiResourceSpans(hostInstance('h', 1), spans.map((s) => s.span))]);
    const { next, telemetry } = await run({ sampling_percentage: 50, mode: 'proportional' }, body);
    const keptIds = new Set(decoded(next.batches[0]).resourceSpans![0]!.scopeSpans!.map((ss) => ss.spans![0]!.spanId));
    assert.deepEqual(
      spans.map((s) => keptIds.has(s.span.spanId.toString('base64'))),
      spans.map((s) => s.kept),
    );
    const text = await telemetry.registry.getSingleMetricAsString('otelcol_processor_probabilistic_sampler_count_traces_sampled');
    assert.match(text, /policy="sampling_priority",sampled="true"\} 3/);
    assert.match(text, /policy="sampling_priority",sampled="false"\} 2/);
    assert.match(text, /policy="trace_id_w3c",sampled="false"\} 2/);
  });
});

void describe('probabilistic_sampler on the wire', () => {
  void test('the output equals a protobufjs decode, edit and encode of the input; untouched resources are the same bytes', async () => {
    const config = { sampling_percentage: 30, mode: 'proportional', fail_closed: false };
    for (const body of corpusRequests({ seed: 7, traces: 400, requests: 2 })) {
      const { input, next } = await run(config, body);
      // The same decisions, applied to decoded objects.
      const sampler = new Sampler(parse(config));
      const expected = decoded(input);
      expected.resourceSpans = (expected.resourceSpans ?? [])
        .map((rs) => ({
          ...rs,
          scopeSpans: (rs.scopeSpans ?? [])
            .map((ss) => ({
              ...ss,
              spans: (ss.spans ?? []).flatMap((span) => {
                const id = Buffer.from(span.traceId, 'base64');
                const priorityValue = span.attributes?.find((a) => a.key === 'sampling.priority')?.value;
                const d = sampler.decide(id, 0, 16, span.traceState ?? '', priorityOf(priorityValue));
                if (!d.sampled) return [];
                return [d.traceState === undefined ? span : { ...span, traceState: d.traceState }];
              }),
            }))
            .filter((ss) => ss.spans.length > 0),
        }))
        .filter((rs) => rs.scopeSpans.length > 0);
      const out = next.batches[0];
      assert.deepEqual(decoded(out), expected);
      // Each rebuilt resource counts the spans it holds.
      for (const block of out?.resources ?? []) {
        const rs = types.ResourceSpans.toObject(types.ResourceSpans.decode(block.bytes)) as { scopeSpans: { spans: unknown[] }[] };
        assert.equal(block.itemCount, rs.scopeSpans.reduce((n, ss) => n + ss.spans.length, 0));
      }
    }
  });

  void test('a resource nothing changes in is passed on as the same bytes; an emptied one is removed', async () => {
    // At 50 % equalizing, an arriving th:8 is written back as it came: nothing to rewrite.
    const state = { traceState: 'ot=th:8' };
    const keep = obiResourceSpans(hostInstance('keep', 1), [{ ...obiSpan({ traceId: traceId('ffffffffffffff') }), ...state }, { ...obiSpan({ traceId: traceId('fffffffffffff0') }), ...state }]);
    const drop = obiResourceSpans(hostInstance('drop', 2), [obiSpan({ traceId: traceId('00000000000000') })]);
    const { input, next } = await run({ sampling_percentage: 50, mode: 'equalizing' }, encodeTraces([keep, drop]));
    assert.equal(next.batches.length, 1);
    assert.equal(next.batches[0]!.resources.length, 1);
    assert.equal(next.batches[0]!.resources[0]!.bytes, input.resources[0]!.bytes);
    // Nothing kept at all: nothing is passed on, and the call succeeds.
    const none = await run({ sampling_percentage: 50, mode: 'equalizing' }, encodeTraces([drop]));
    assert.equal(none.next.batches.length, 0);
  });

  void test('a resource the receiver left unchecked is checked before its spans are read', async () => {
    const body = encodeTraces([obiResourceSpans(hostInstance('h', 1), [obiSpan({ traceId: traceId('ffffffffffffff') })])]);
    const input = parseRequest('traces', body).batch;
    const unchecked = new Batch('traces', [{ ...input.resources[0]!, unchecked: true }]);
    const next = new Capture();
    const processor = new ProbabilisticSamplerProcessor(testSettings('probabilistic_sampler'), parse({ sampling_percentage: 50, mode: 'proportional' }), next);
    await processor.consume(unchecked);
    assert.ok(!next.batches[0]!.resources[0]!.unchecked);
    assert.equal(next.batches[0]!.itemCount, 1);
    const broken = new Batch('traces', [{ bytes: Buffer.from([0x12, 0x05, 0x12, 0x03, 0x0a, 0x01]), attributes: new Map(), itemCount: 1, unchecked: true }]);
    await assert.rejects(processor.consume(broken), /invalid traces resource/);
  });
});

void describe('probabilistic_sampler keep fraction', () => {
  // n trace ids; the kept count must lie within 5 standard deviations of n * p.
  const n = 100_000;
  const random = seededRandom(42);
  const ids = Buffer.alloc(16 * n);
  for (let i = 0; i < ids.length; i++) ids[i] = Math.floor(random() * 256);
  const cases: [Record<string, unknown>, number][] = [
    [{ sampling_percentage: 10 }, 1638 / 16384],
    [{ sampling_percentage: 33.3, hash_seed: 99 }, Math.trunc(Math.fround(Math.fround(33.3) * Math.fround(163.84))) / 16384],
    [{ sampling_percentage: 10, mode: 'proportional' }, 0.1],
    [{ sampling_percentage: 1, mode: 'proportional' }, 0.01],
    [{ sampling_percentage: 25, mode: 'equalizing' }, 0.25],
    [{ sampling_percentage: 75, mode: 'equalizing', sampling_precision: 1 }, 0.75],
  ];
  for (const [config, p] of cases) {
    void test(`${JSON.stringify(config)} keeps ${(p * 100).toFixed(2)} % of ${n} traces within 5 sigma`, () => {
      const sampler = new Sampler(parse(config));
      let kept = 0;
      for (let i = 0; i < n; i++) if (sampler.decide(ids, 16 * i, 16 * i + 16, '', Priority.Defer).sampled) kept++;
      const sigma = Math.sqrt(n * p * (1 - p));
      assert.ok(Math.abs(kept - n * p) < 5 * sigma, `kept ${kept}, expected ${n * p} ± ${5 * sigma}`);
    });
  }

  void test('spans of one trace share one decision, whatever resource they arrive in', () => {
    const sampler = new Sampler(parse({ sampling_percentage: 20, mode: 'proportional' }));
    for (let i = 0; i < 200; i++) {
      const id = randomBytes(16);
      const first = sampler.decide(id, 0, 16, '', Priority.Defer).sampled;
      const copy = Buffer.concat([randomBytes(5), id]);
      assert.equal(sampler.decide(copy, 5, 21, '', Priority.Defer).sampled, first);
    }
  });
});

/** The Priority protobufjs' decoded AnyValue gives, by the Collector's rules. */
function priorityOf(value: Record<string, unknown> | undefined): Priority {
  if (!value) return Priority.Defer;
  const n = 'intValue' in value ? Number(value.intValue) : 'doubleValue' in value ? Number(value.doubleValue) : 'stringValue' in value ? parseGoFloat(String(value.stringValue)) : undefined;
  if (n === undefined || Number.isNaN(n)) return Priority.Defer;
  return n === 0 ? Priority.DoNotSample : n > 0 ? Priority.MustSample : Priority.Defer;
}
