import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pino from 'pino';
import { ExporterHelper, type HelperConfig, type PushFn } from '../../../src/exporters/exporterhelper/exporterhelper';
import { BEHAVIOUR, IllegalTransitionError, TRANSITIONS, nextState, type QueueEvent, type QueueState } from '../../../src/exporters/exporterhelper/queue-state';
import type { Batch } from '../../../src/pdata/batch';
import { parseRequest } from '../../../src/pdata/scan';
import { SelfTelemetry } from '../../../src/service/telemetry';
import { hostInstance, obiTraceRequest } from '../../helpers/obi';

const STATES: QueueState[] = ['running', 'releasing', 'handingOver', 'draining', 'abandoning', 'drained', 'handedOver', 'abandoned'];
const EVENTS: QueueEvent[] = ['adopt', 'prepareRelease', 'release', 'drain', 'abandon', 'done'];

// Written out here, not read from TRANSITIONS, so that a changed table fails this test.
const ALLOWED: [QueueState, QueueEvent, QueueState][] = [
  ['running', 'adopt', 'running'],
  ['running', 'prepareRelease', 'releasing'],
  ['running', 'release', 'handingOver'],
  ['running', 'drain', 'draining'],
  ['running', 'abandon', 'abandoning'],
  ['releasing', 'prepareRelease', 'releasing'],
  ['releasing', 'release', 'handingOver'],
  ['releasing', 'abandon', 'abandoning'],
  ['handingOver', 'abandon', 'handingOver'],
  ['handingOver', 'done', 'handedOver'],
  ['draining', 'drain', 'draining'],
  ['draining', 'abandon', 'abandoning'],
  ['draining', 'done', 'drained'],
  ['drained', 'drain', 'drained'],
  ['drained', 'abandon', 'abandoning'],
  ['abandoning', 'prepareRelease', 'abandoning'],
  ['abandoning', 'release', 'abandoning'],
  ['abandoning', 'drain', 'abandoning'],
  ['abandoning', 'abandon', 'abandoning'],
  ['abandoning', 'done', 'abandoned'],
  ['abandoned', 'prepareRelease', 'abandoned'],
  ['abandoned', 'release', 'abandoned'],
  ['abandoned', 'drain', 'abandoned'],
  ['abandoned', 'abandon', 'abandoned'],
  ['handedOver', 'drain', 'handedOver'],
  ['handedOver', 'abandon', 'handedOver'],
];

describe('exporter helper queue states: the transition table', () => {
  test('every allowed transition leads where the documented diagram says', () => {
    for (const [from, event, to] of ALLOWED) assert.equal(nextState(from, event, 'otlp/t'), to, `${from} --${event}-->`);
  });

  test('every other pair is illegal, and says which call in which state', () => {
    let illegal = 0;
    for (const from of STATES) {
      for (const event of EVENTS) {
        if (ALLOWED.some(([f, e]) => f === from && e === event)) continue;
        illegal++;
        assert.throws(
          () => nextState(from, event, 'otlp/t'),
          (err: Error) => err instanceof IllegalTransitionError && err.message === `exporter otlp/t: ${event} is not allowed in state ${from} (a bug in the caller of the exporter helper)`,
        );
      }
    }
    const listed = Object.values(TRANSITIONS).reduce((n, row) => n + Object.keys(row).length, 0);
    assert.equal(listed, ALLOWED.length, 'the table has no transition this test does not check');
    assert.equal(illegal, STATES.length * EVENTS.length - ALLOWED.length);
  });

  test('named forbidden cases: adopt after a stop, release twice, shutdown (drain) during a release, anything but abandon after a hand-over', () => {
    for (const stopped of ['drained', 'handedOver', 'abandoned'] as const) assert.throws(() => nextState(stopped, 'adopt', 'x'), IllegalTransitionError);
    assert.throws(() => nextState('handingOver', 'release', 'x'), IllegalTransitionError);
    assert.throws(() => nextState('handedOver', 'release', 'x'), IllegalTransitionError);
    assert.throws(() => nextState('releasing', 'drain', 'x'), IllegalTransitionError);
    assert.throws(() => nextState('handingOver', 'drain', 'x'), IllegalTransitionError);
    assert.throws(() => nextState('handedOver', 'prepareRelease', 'x'), IllegalTransitionError);
    assert.throws(() => nextState('running', 'done', 'x'), IllegalTransitionError);
  });

  test('only running and releasing take batches; only running and the drain send them', () => {
    const takes = STATES.filter((s) => BEHAVIOUR[s].takesBatches);
    const sends = STATES.filter((s) => BEHAVIOUR[s].sends);
    assert.deepEqual(takes, ['running', 'releasing']);
    assert.deepEqual(sends, ['running', 'draining', 'drained']);
  });
});

describe('exporter helper queue states: the helper follows them', () => {
  const batch = (): Batch => parseRequest('traces', obiTraceRequest([hostInstance('h', 1)], 1)).batch;
  const hang: PushFn = (_b, signal) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));

  function helper(push: PushFn, telemetry = new SelfTelemetry()): ExporterHelper {
    const config: HelperConfig = {
      timeout: { timeoutMs: 0 },
      retry: { enabled: true, initialIntervalMs: 60_000, maxIntervalMs: 60_000, maxElapsedTimeMs: 0, multiplier: 1, randomizationFactor: 0 },
      queue: { enabled: true, numConsumers: 1, queueSize: 100, sizer: 'requests' },
    };
    return new ExporterHelper({ id: 'otlp/t', logger: pino({ level: 'silent' }), telemetry }, config, push);
  }

  /** Resolves once the push was called `n` times (an attempt is in flight). */
  function pushes(n: number, then: PushFn): { push: PushFn; reached: Promise<void> } {
    let calls = 0;
    let reach!: () => void;
    const reached = new Promise<void>((resolve) => (reach = resolve));
    return {
      push: (b, signal) => {
        if (++calls === n) reach();
        return then(b, signal);
      },
      reached,
    };
  }

  const failed = async (telemetry: SelfTelemetry) => {
    const metric = (await telemetry.registry.getMetricsAsJSON()).find((m) => m.name === 'otelcol_exporter_send_failed_spans');
    return (metric?.values ?? []).reduce((sum, v) => sum + Number(v.value), 0);
  };

  test('a shutdown drains: running, draining, drained; a second shutdown and an abandon after it are accepted', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { push, reached } = pushes(1, () => gate);
    const h = helper(push);
    await h.consume(batch());
    await reached;
    assert.equal(h.lifecycleState, 'running');
    const stopping = h.shutdown();
    assert.equal(h.lifecycleState, 'draining');
    release();
    await stopping;
    assert.equal(h.lifecycleState, 'drained');
    await h.shutdown();
    await h.abandonQueue();
    assert.equal(h.lifecycleState, 'abandoned');
  });

  test('the deadline during a drain: abandoning ends the shutdown once it has counted what it dropped', async () => {
    const telemetry = new SelfTelemetry();
    const { push, reached } = pushes(1, hang);
    const h = helper(push, telemetry);
    await h.consume(batch());
    await h.consume(batch());
    await reached;
    const stopping = h.shutdown();
    const abandoning = h.abandonQueue();
    assert.equal(h.lifecycleState, 'abandoning');
    // A second abandon waits for the first.
    await Promise.all([h.abandonQueue(), abandoning, stopping]);
    assert.equal(h.lifecycleState, 'abandoned');
    assert.equal(await failed(telemetry), 2, 'both batches counted once');
  });

  test('a reload: releasing still takes batches, handingOver refuses them, handedOver ends it; a second release is a bug', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { push, reached } = pushes(1, () => gate);
    const h = helper(push);
    await h.consume(batch());
    await reached; // in flight: the hand-over waits for it
    h.prepareRelease();
    assert.equal(h.lifecycleState, 'releasing');
    await h.consume(batch()); // queued for the successor
    const releasing = h.releaseQueue();
    assert.equal(h.lifecycleState, 'handingOver');
    await assert.rejects(h.consume(batch()), /shutting down/);
    await assert.rejects(h.releaseQueue(), IllegalTransitionError, 'release during a release');
    await assert.rejects(h.shutdown(), /drain is not allowed in state handingOver/, 'shutdown during a release');
    assert.throws(() => h.adoptQueue([]), IllegalTransitionError);
    assert.equal(h.lifecycleState, 'handingOver');
    release();
    assert.equal((await releasing).length, 1, 'the queued batch; the one in flight was sent');
    assert.equal(h.lifecycleState, 'handedOver');
    await assert.rejects(h.releaseQueue(), /release is not allowed in state handedOver/);
    await h.shutdown(); // the graph stops a released exporter too
    assert.equal(h.lifecycleState, 'handedOver');
  });

  // The backoff is 60 s: without the wake-up on leaving the sending states this times out.
  test('entering a state that does not send wakes a batch waiting for its retry', { timeout: 20_000 }, async () => {
    const { push, reached } = pushes(1, () => Promise.reject(new Error('down')));
    const h = helper(push);
    await h.consume(batch());
    await reached;
    await new Promise((resolve) => setImmediate(resolve)); // the attempt failed: now in its backoff
    assert.equal((await h.releaseQueue()).length, 1);
  });

  test('adopting after a stop is a bug: it throws, and the batches are counted as failed, not lost silently', async () => {
    const telemetry = new SelfTelemetry();
    const h = helper(async () => undefined, telemetry);
    await h.shutdown();
    assert.throws(() => h.adoptQueue([batch(), batch()]), /adopt is not allowed in state drained/);
    assert.equal(await failed(telemetry), 2);
  });

  test('the deadline before a reload released the queue: the release gets nothing (it was dropped, counted)', async () => {
    const telemetry = new SelfTelemetry();
    const { push, reached } = pushes(1, hang);
    const h = helper(push, telemetry);
    h.prepareRelease();
    await h.consume(batch());
    h.abandonQueue().catch(assert.fail);
    assert.equal(h.lifecycleState, 'abandoning');
    assert.deepEqual(await h.releaseQueue(), []);
    assert.equal(h.lifecycleState, 'abandoned');
    assert.equal(await failed(telemetry), 1);
    // Nothing was sent in `releasing`: the batch waited for the successor.
    assert.equal(await Promise.race([reached.then(() => 'pushed'), Promise.resolve('not pushed')]), 'not pushed');
  });
});
