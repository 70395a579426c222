import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import type { Consumer } from '../../../src/component/component';
import { types } from '../../../src/pdata/codec';
import { parseRequest } from '../../../src/pdata/scan';
import { parseTailSamplingConfig } from '../../../src/processors/tailsampling/config';
import { parseTraceState, probabilityThreshold } from '../../../src/processors/tailsampling/policies';
import { SelfTelemetry } from '../../../src/service/telemetry';
import { Capture, configErrors, parseWith } from '../../helpers/components';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan, type SpanSpec } from '../../helpers/obi';
import { str } from '../../helpers/otlp-json';
import { Clock, batchOf, flush, keptSpans, metricReader, tailSampler } from '../../helpers/tail-sampling';

// The processor with an injected clock: decisions happen on tick(), so nothing here sleeps.

function setup(raw: Record<string, unknown>, next: Consumer = new Capture()) {
  const clock = new Clock();
  const telemetry = new SelfTelemetry();
  const processor = tailSampler(raw, next, clock, telemetry);
  return { clock, processor, metric: metricReader(telemetry), telemetry, capture: next as Capture };
}

const keptTraces = (capture: Capture): Set<string> => new Set(keptSpans(capture).map((s) => s.traceId));

describe('tail_sampling config', () => {
  test('defaults are the Collector\'s, plus the byte bound', () => {
    const c = parseWith(parseTailSamplingConfig, { policies: [{ name: 'a', type: 'always_sample' }] });
    assert.equal(c.decisionWaitMs, 30_000);
    assert.equal(c.numTraces, 50_000);
    assert.equal(c.sampledCacheSize, 0);
    assert.equal(c.maxBufferedBytes, 256 * 1024 * 1024);
  });

  test('problems are reported with their paths', () => {
    const errors = configErrors(parseTailSamplingConfig, {
      block_on_overflow: true,
      sampling_strategy: 'span-ingest',
      policies: [
        { name: 'a', type: 'nope' },
        { name: 'a', type: 'always_sample' },
        { type: 'always_sample' },
        { name: 's', type: 'status_code', status_code: { status_codes: ['BAD'] } },
        { name: 'n', type: 'numeric_attribute', numeric_attribute: { key: 'x' } },
        { name: 'r', type: 'string_attribute', string_attribute: { key: 'x', values: ['(a'], enabled_regex_matching: true } },
        { name: 'o', type: 'ottl_condition', ottl_condition: { span: ['attributes["x"] =='] } },
        { name: 'b', type: 'bytes_limiting' },
        { name: 'c', type: 'composite', composite: { composite_sub_policy: [{ name: 'x', type: 'drop' }] } },
        { name: 'l', type: 'latency', latency: { treshold_ms: 3 } },
      ],
    }, 'processors::tail_sampling');
    const expect = [
      'processors::tail_sampling::block_on_overflow: is not supported',
      'processors::tail_sampling::sampling_strategy: must be one of trace-complete',
      'processors::tail_sampling::policies[0]::type: unknown sampling policy type "nope"',
      'processors::tail_sampling::policies[1]::name: duplicate policy name "a"',
      'processors::tail_sampling::policies[2]::name: policy name cannot be empty',
      'processors::tail_sampling::policies[3]::status_code::status_codes[0]: must be one of OK, ERROR, UNSET',
      'processors::tail_sampling::policies[4]::numeric_attribute: at least one of min_value or max_value must be set',
      'processors::tail_sampling::policies[5]::string_attribute::values[0]: invalid regex',
      'processors::tail_sampling::policies[6]::ottl_condition::span: unable to parse OTTL condition',
      'processors::tail_sampling::policies[7]::type: "bytes_limiting" is not supported',
      'processors::tail_sampling::policies[8]::composite::composite_sub_policy[0]::type: unknown sampling policy type "drop" here',
      'processors::tail_sampling::policies[9]::latency::treshold_ms: unknown key',
    ];
    for (const prefix of expect) assert.ok(errors.some((e) => e.startsWith(prefix)), `missing ${prefix} in:\n${errors.join('\n')}`);
  });
});

describe('tail_sampling decisions', () => {
  test('a trace waits decision_wait, then the policies decide; any sampled keeps it', async () => {
    const { clock, processor, capture, metric } = setup({
      policies: [
        { name: 'errors', type: 'status_code', status_code: { status_codes: ['ERROR'] } },
        { name: 'slow', type: 'latency', latency: { threshold_ms: 100 } },
      ],
    });
    const [err, slow, fast] = [randomBytes(16), randomBytes(16), randomBytes(16)];
    const startNs = 1_700_000_000_000_000_000n;
    await processor.consume(batchOf({ traceId: err, statusCode: 2, startNs }, { traceId: slow, durationNs: 150_000_000n, startNs }, { traceId: fast, startNs }));
    clock.now += 5_000;
    // The other end of the error trace arrives later, from another process.
    await processor.consume(batchOf({ traceId: err, service: 'backend', startNs }));
    clock.now += 4_999;
    processor.tick();
    await flush();
    assert.equal(capture.batches.length, 0, 'nothing before decision_wait');
    clock.now += 1;
    processor.tick();
    await flush();
    assert.deepEqual(keptTraces(capture), new Set([err.toString('hex'), slow.toString('hex')]));
    assert.equal(keptSpans(capture).length, 3, 'both ends of the error trace');
    assert.equal(await metric('otelcol_processor_tail_sampling_global_count_traces_sampled', { decision: 'sampled' }), 2);
    assert.equal(await metric('otelcol_processor_tail_sampling_global_count_traces_sampled', { decision: 'not_sampled' }), 1);
    assert.equal(await metric('otelcol_processor_tail_sampling_count_traces_sampled', { policy: 'errors', decision: 'sampled' }), 1);
    assert.equal(await metric('otelcol_processor_tail_sampling_count_traces_sampled', { policy: 'slow', decision: 'not_sampled' }), 2);
    assert.equal(await metric('otelcol_processor_tail_sampling_new_trace_id_received'), 3);
    assert.equal(processor.stats.bufferedBytes, 0, 'decided traces hold no bytes');
  });

  test('kept spans leave as they came: resource, scope and span bytes', async () => {
    const { clock, processor, capture } = setup({ policies: [{ name: 'a', type: 'always_sample' }] });
    const batch = batchOf({ traceId: randomBytes(16), name: 'one' }, { traceId: randomBytes(16), name: 'two' }, { traceId: randomBytes(16), name: 'three', service: 'backend' });
    await processor.consume(batch);
    clock.now += 10_000;
    processor.tick();
    await flush();
    const original = batch.resources.map((b) => types.ResourceSpans.toObject(types.ResourceSpans.decode(b.bytes), { bytes: String, longs: String }));
    const out = capture.batches.flatMap((b) => b.resources.map((r) => types.ResourceSpans.toObject(types.ResourceSpans.decode(r.bytes), { bytes: String, longs: String })));
    assert.deepEqual(out, original);
    assert.equal(capture.batches[0]!.itemCount, 3);
    assert.equal(capture.batches[0]!.resources[0]!.attributes.get('service.name'), 'frontend');
  });

  test('a drop policy wins over a sampling one; a failing policy is skipped and counted', async () => {
    const { clock, processor, capture, metric } = setup({
      policies: [
        { name: 'all', type: 'always_sample' },
        { name: 'no-health', type: 'drop', drop: { drop_sub_policy: [{ name: 'h', type: 'string_attribute', string_attribute: { key: 'url.path', values: ['/health'] } }] } },
        { name: 'fails', type: 'ottl_condition', ottl_condition: { error_mode: 'propagate', span: ['Int(attributes["url.path"]) > 0'] } },
      ],
    });
    const [health, other] = [randomBytes(16), randomBytes(16)];
    await processor.consume(batchOf({ traceId: health, attributes: [str('url.path', '/health')] }, { traceId: other, attributes: [str('url.path', '/x')] }));
    clock.now += 10_000;
    processor.tick();
    await flush();
    assert.deepEqual(keptTraces(capture), new Set([other.toString('hex')]));
    assert.equal(await metric('otelcol_processor_tail_sampling_global_count_traces_sampled', { decision: 'dropped' }), 1);
    assert.equal(await metric('otelcol_processor_tail_sampling_sampling_policy_evaluation_error'), 1, 'the ottl policy failed on the kept trace only (the dropped one stops at the drop policy)');
  });

  test('sample_on_first_match stops at the first sampling policy', async () => {
    const { clock, processor, metric } = setup({
      sample_on_first_match: true,
      policies: [
        { name: 'a', type: 'always_sample' },
        { name: 'b', type: 'always_sample' },
      ],
    });
    await processor.consume(batchOf({}));
    clock.now += 10_000;
    processor.tick();
    assert.equal(await metric('otelcol_processor_tail_sampling_sampling_policy_execution_count', { policy: 'b' }), 0);
  });

  test('late spans follow the decision, with and without a decision cache', async () => {
    for (const cache of [undefined, { sampled_cache_size: 100, non_sampled_cache_size: 100 }]) {
      const { clock, processor, capture, metric } = setup({ decision_cache: cache, policies: [{ name: 'e', type: 'status_code', status_code: { status_codes: ['ERROR'] } }] });
      const [kept, dropped] = [randomBytes(16), randomBytes(16)];
      await processor.consume(batchOf({ traceId: kept, statusCode: 2 }, { traceId: dropped }));
      clock.now += 10_000;
      processor.tick();
      await processor.consume(batchOf({ traceId: kept, name: 'late', service: 'db' }, { traceId: dropped, name: 'late', service: 'db' }, { traceId: dropped, statusCode: 2, name: 'late error', service: 'db' }));
      await flush();
      assert.deepEqual(keptSpans(capture).map((s) => s.name).sort(), ['GET /users/*', 'late'], `cache ${JSON.stringify(cache)}`);
      assert.equal(await metric('otelcol_processor_tail_sampling_late_spans', { sampled: 'true' }), 1);
      assert.equal(await metric('otelcol_processor_tail_sampling_late_spans', { sampled: 'false' }), 2);
      assert.equal(await metric('otelcol_processor_tail_sampling_early_releases_from_cache_decision'), cache ? 3 : 0);
      assert.equal(processor.stats.pending, 0);
      assert.equal(processor.stats.decided, cache ? 0 : 2);
    }
  });

  test('histograms: decision latency per policy, timer latency, late span age, with the Collector\'s buckets', async () => {
    const { clock, processor, metric, telemetry } = setup({
      policies: [
        { name: 'errors', type: 'status_code', status_code: { status_codes: ['ERROR'] } },
        { name: 'slow', type: 'latency', latency: { threshold_ms: 100 } },
      ],
    });
    const histogramLines = async (name: string): Promise<string[]> => (await telemetry.registry.metrics()).split('\n').filter((l) => l.startsWith(name));
    const [a, b, c] = [randomBytes(16), randomBytes(16), randomBytes(16)];
    await processor.consume(batchOf({ traceId: a, statusCode: 2 }, { traceId: b }, { traceId: c }));
    assert.deepEqual(await histogramLines('otelcol_processor_tail_sampling_sampling_decision_latency'), [], 'no series before the first decision');
    clock.now += 10_000;
    processor.tick();
    processor.tick();
    clock.now += 7_500;
    await processor.consume(batchOf({ traceId: a, name: 'late', service: 'db' }, { traceId: b, name: 'late', service: 'db' }));
    await flush();
    const latency = 'otelcol_processor_tail_sampling_sampling_decision_latency';
    const bounds = ['1', '2', '5', '10', '25', '50', '75', '100', '150', '200', '300', '400', '500', '750', '1000', '2000', '3000', '4000', '5000', '10000', '20000', '30000', '50000', '+Inf'];
    const les = (lines: string[]) => lines.filter((l) => l.includes('_bucket{')).map((l) => /le="([^"]+)"/.exec(l)![1]);
    const errorsLines = (await histogramLines(latency)).filter((l) => l.includes('policy="errors"'));
    assert.deepEqual(les(errorsLines), bounds);
    assert.equal(await metric(`${latency}_count`, { policy: 'errors' }), 3);
    assert.equal(await metric(`${latency}_count`, { policy: 'slow' }), 3);
    assert.equal(await metric(`${latency}_bucket`, { policy: 'slow', le: '+Inf' }), 3);
    const timer = 'otelcol_processor_tail_sampling_sampling_decision_timer_latency';
    assert.deepEqual(les(await histogramLines(timer)), bounds);
    assert.equal(await metric(`${timer}_count`), 2, 'one per run of the timer');
    const age = 'otelcol_processor_tail_sampling_sampling_late_span_age';
    assert.deepEqual(les(await histogramLines(age)), ['0', '5', '10', '25', '50', '75', '100', '250', '500', '750', '1000', '2500', '5000', '7500', '10000', '+Inf']);
    // Two traces' late spans, 7.5 s after their decision: 7 whole seconds each.
    assert.equal(await metric(`${age}_count`), 2);
    assert.equal(await metric(`${age}_sum`), 14);
    assert.equal(await metric(`${age}_bucket`, { le: '5' }), 0);
    assert.equal(await metric(`${age}_bucket`, { le: '10' }), 2);
  });

  test('at num_traces the oldest trace is decided early, counted, and still evaluated', async () => {
    const { clock, processor, capture, metric } = setup({ num_traces: 3, policies: [{ name: 'e', type: 'status_code', status_code: { status_codes: ['ERROR'] } }] });
    const ids = Array.from({ length: 5 }, () => randomBytes(16));
    for (const id of ids) {
      await processor.consume(batchOf({ traceId: id, statusCode: 2 }));
      clock.now += 10;
    }
    await flush();
    assert.equal(await metric('otelcol_processor_tail_sampling_sampling_trace_dropped_too_early'), 2);
    assert.deepEqual(keptTraces(capture), new Set(ids.slice(0, 2).map((id) => id.toString('hex'))), 'the two oldest, kept (errors) before their time');
    assert.ok(processor.stats.pending + processor.stats.decided <= 3);
  });

  test('past max_buffered_bytes the oldest traces are decided early; the buffer stays bounded', async () => {
    const { processor, metric } = setup({ max_buffered_bytes: 4096, policies: [{ name: 'a', type: 'always_sample' }] });
    for (let i = 0; i < 50; i++) {
      await processor.consume(batchOf({ traceId: randomBytes(16) }, { traceId: randomBytes(16) }));
      assert.ok(processor.stats.bufferedBytes <= 4096, `buffered ${processor.stats.bufferedBytes}`);
    }
    assert.ok((await metric('otelcol_processor_tail_sampling_sampling_trace_dropped_too_early')) > 50);
    assert.ok(processor.stats.pending > 0);
  });

  test('maximum_trace_size_bytes: a trace past it is not sampled, counted', async () => {
    const { clock, processor, capture, metric } = setup({ maximum_trace_size_bytes: 600, policies: [{ name: 'a', type: 'always_sample' }] });
    const big = randomBytes(16);
    await processor.consume(batchOf({ traceId: big }, { traceId: big }, { traceId: big }));
    await processor.consume(batchOf({ traceId: randomBytes(16) }));
    clock.now += 10_000;
    processor.tick();
    await flush();
    assert.equal(await metric('otelcol_processor_tail_sampling_traces_dropped_too_large'), 1);
    assert.equal(keptTraces(capture).size, 1);
    assert.ok(!keptTraces(capture).has(big.toString('hex')));
  });

  test('decision_wait_after_root_received decides a trace early once its root arrived', async () => {
    const { clock, processor, capture } = setup({ decision_wait_after_root_received: '1s', policies: [{ name: 'a', type: 'always_sample' }] });
    const [rooted, child] = [randomBytes(16), randomBytes(16)];
    await processor.consume(batchOf({ traceId: rooted }, { traceId: child, parentSpanId: randomBytes(8) }));
    clock.now += 1000;
    processor.tick();
    await flush();
    assert.deepEqual(keptTraces(capture), new Set([rooted.toString('hex')]));
  });

  test('a refusal downstream loses the kept spans, counted; consume still succeeds', async () => {
    const refusing: Consumer = { consume: () => Promise.reject(new Error('queue full')) };
    const { clock, processor, metric } = setup({ policies: [{ name: 'a', type: 'always_sample' }] }, refusing);
    await processor.consume(batchOf({}, {}));
    clock.now += 10_000;
    processor.tick();
    await processor.shutdown();
    assert.equal(await metric('otelcol_processor_tail_sampling_sampled_spans_refused'), 2);
  });

  test('shutdown decides what waits (or drops it with drop_pending_traces_on_shutdown)', async () => {
    for (const drop of [false, true]) {
      const { processor, capture } = setup({ drop_pending_traces_on_shutdown: drop, policies: [{ name: 'a', type: 'always_sample' }] });
      await processor.consume(batchOf({}, {}));
      await processor.shutdown();
      assert.equal(keptSpans(capture).length, drop ? 0 : 2);
    }
  });
});

describe('tail_sampling policies', () => {
  async function keeps(policy: Record<string, unknown>, ...traces: (SpanSpec & { service?: string })[][]): Promise<boolean[]> {
    const { clock, processor, capture } = setup({ policies: [{ name: 'p', ...policy }] });
    const ids = traces.map(() => randomBytes(16));
    await processor.consume(batchOf(...traces.flatMap((spans, i) => spans.map((s) => ({ ...s, traceId: ids[i] })))));
    clock.now += 10_000;
    processor.tick();
    await flush();
    const kept = keptTraces(capture);
    return ids.map((id) => kept.has(id.toString('hex')));
  }

  test('latency: the extent of the whole trace, with an upper bound', async () => {
    const t0 = 1_700_000_000_000_000_000n;
    const ms = 1_000_000n;
    const policy = { type: 'latency', latency: { threshold_ms: 100, upper_threshold_ms: 200 } };
    assert.deepEqual(
      await keeps(policy,
        [{ startNs: t0, durationNs: 50n * ms }, { startNs: t0 + 100n * ms, durationNs: 50n * ms }],
        [{ startNs: t0, durationNs: 100n * ms }],
        [{ startNs: t0, durationNs: 300n * ms }]),
      [true, false, false],
    );
  });

  test('string_attribute: resource or span, exact, regex, inverted', async () => {
    const route = (v: string) => [{ attributes: [str('http.route', v)] }];
    assert.deepEqual(await keeps({ type: 'string_attribute', string_attribute: { key: 'service.name', values: ['backend'] } }, [{ service: 'backend' }], [{}]), [true, false]);
    assert.deepEqual(await keeps({ type: 'string_attribute', string_attribute: { key: 'http.route', values: ['^/a'], enabled_regex_matching: true } }, route('/ab'), route('/b')), [true, false]);
    assert.deepEqual(
      await keeps({ type: 'string_attribute', string_attribute: { key: 'http.route', values: ['/health'], invert_match: true } }, route('/x'), route('/health'), [{ attributes: [] }]),
      [true, false, true],
    );
  });

  test('numeric and boolean attributes: ints only, as pcommon reads them', async () => {
    const attr = (value: Record<string, unknown>) => [{ attributes: [{ key: 'code', value }] }];
    const policy = { type: 'numeric_attribute', numeric_attribute: { key: 'code', min_value: 500, max_value: 599 } };
    assert.deepEqual(await keeps(policy, attr({ intValue: 503 }), attr({ doubleValue: 503 }), attr({ intValue: 200 })), [true, false, false]);
    const flag = { type: 'boolean_attribute', boolean_attribute: { key: 'code', value: true } };
    assert.deepEqual(await keeps(flag, attr({ boolValue: true }), attr({ stringValue: 'true' })), [true, false]);
  });

  test('span_count, trace_state, and, not', async () => {
    assert.deepEqual(await keeps({ type: 'span_count', span_count: { min_spans: 2 } }, [{}, {}], [{}]), [true, false]);
    assert.deepEqual(
      await keeps({ type: 'and', and: { and_sub_policy: [{ name: 'a', type: 'span_count', span_count: { min_spans: 2 } }, { name: 'b', type: 'not', not: { not_sub_policy: { name: 'c', type: 'status_code', status_code: { status_codes: ['ERROR'] } } } }] } },
        [{}, {}], [{}, { statusCode: 2 }], [{}]),
      [true, false, false],
    );
    assert.deepEqual(parseTraceState('vendor=gold, ot=th:8'), new Map([['vendor', 'gold'], ['ot', 'th:8']]));
    assert.equal(parseTraceState('bad key=gold'), undefined);
    assert.equal(parseTraceState('a=1,a=2'), undefined);
  });

  test('probabilistic: the Collector\'s threshold arithmetic', () => {
    assert.equal(probabilityThreshold(1), 2n ** 64n - 1n);
    assert.equal(probabilityThreshold(0.5), 2n ** 63n - 1n);
    assert.equal(probabilityThreshold(0), 0n);
    assert.equal(probabilityThreshold(2), 2n ** 64n - 1n);
  });

  test('rate_limiting and composite follow the clock', async () => {
    const { clock, processor, capture } = setup({
      policies: [
        { name: 'rl', type: 'rate_limiting', rate_limiting: { spans_per_second: 2 } },
      ],
    });
    // Burst is 2 × spans_per_second: four single-span traces pass, the fifth does not.
    await processor.consume(batchOf({}, {}, {}, {}, {}));
    clock.now += 10_000;
    processor.tick();
    await flush();
    // 10 s passed since creation: the bucket is full (4 tokens); five traces want one each.
    assert.equal(keptTraces(capture).size, 4);

    const c = setup({
      policies: [
        {
          name: 'comp',
          type: 'composite',
          composite: {
            max_total_spans_per_second: 3,
            composite_sub_policy: [{ name: 'all', type: 'always_sample' }],
            rate_allocation: [{ policy: 'all', percent: 100 }],
          },
        },
      ],
    });
    await c.processor.consume(batchOf({}, {}, {}, {}, {}));
    c.clock.now += 10_000;
    c.processor.tick();
    await flush();
    assert.equal(keptTraces(c.capture).size, 3, 'three spans in one second');
  });
});

describe('tail_sampling queues', () => {
  test('the oldest-first queue gives its slots back as the front advances', async () => {
    const { Fifo } = await import('../../../src/processors/tailsampling/fifo');
    const live = new Set<number>();
    const q = new Fifo<number>((n) => live.has(n));
    for (let i = 0; i < 100_000; i++) {
      live.add(i);
      q.push(i);
      if (i >= 10) {
        live.delete(i - 10);
        assert.equal(q.first(), i - 9);
      }
    }
    assert.ok(q.slots < 3000, `queue holds ${q.slots} slots for 10 live items`);
    const seen: number[] = [];
    q.forEachWhile((n) => (seen.push(n), seen.length < 3));
    assert.deepEqual(seen, [99_990, 99_991, 99_992]);
  });
});

describe('tail_sampling and unchecked resources', () => {
  test('a resource the receiver only counted is checked before it is buffered; a malformed one refuses the batch', async () => {
    const { processor } = setup({ policies: [{ name: 'a', type: 'always_sample' }] });
    const body = encodeTraces([obiResourceSpans(hostInstance('h', 1, 'svc'), [obiSpan({ attributes: [str('k', 'XYZXYZ')] })])]);
    const at = body.indexOf('XYZXYZ');
    body[at] = 0xff;
    body[at + 1] = 0xfe;
    const batch = parseRequest('traces', body, () => false).batch;
    assert.equal(batch.resources[0]!.unchecked, true);
    await assert.rejects(processor.consume(batch), (err: Error) => err.name === 'PermanentError' || /invalid traces resource/.test(err.message));
    assert.equal(processor.stats.pending, 0);
    const valid = parseRequest('traces', encodeTraces([obiResourceSpans(hostInstance('h', 1, 'svc'), [obiSpan({})])]), () => false).batch;
    await processor.consume(valid);
    assert.equal(processor.stats.pending, 1);
  });
});
