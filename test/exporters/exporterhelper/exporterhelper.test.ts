import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pino from 'pino';
import { RetryableError } from '../../../src/component/errors';
import type { PushSignal } from '../../../src/exporters/exporterhelper/attempt-signal';
import { ExporterHelper, type HelperConfig, type PushFn } from '../../../src/exporters/exporterhelper/exporterhelper';
import type { Batch } from '../../../src/pdata/batch';
import { parseRequest } from '../../../src/pdata/scan';
import { SelfTelemetry } from '../../../src/service/telemetry';
import { hostInstance, obiTraceRequest } from '../../helpers/obi';

const batch = (): Batch => parseRequest('traces', obiTraceRequest([hostInstance('h', 1)], 1)).batch;

function helper(timeoutMs: number, push: PushFn): ExporterHelper {
  const config: HelperConfig = {
    timeout: { timeoutMs },
    retry: { enabled: false, initialIntervalMs: 10, maxIntervalMs: 10, maxElapsedTimeMs: 0, multiplier: 1, randomizationFactor: 0 },
    queue: { enabled: false, numConsumers: 1, queueSize: 10, sizer: 'requests' },
  };
  return new ExporterHelper({ id: 'otlp/test', logger: pino({ level: 'silent' }), telemetry: new SelfTelemetry() }, config, push);
}

/** A push that settles only when its signal aborts (a peer that never answers). */
const hang: PushFn = (_batch, signal) =>
  new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('exporter helper timeout', () => {
  test('an attempt that does not finish is aborted once its timeout has passed, with a retryable error naming it', async () => {
    const started = Date.now();
    await assert.rejects(helper(150, hang).consume(batch()), (err: Error) => err instanceof RetryableError && err.message === 'export timed out after 150ms');
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 149, `aborted after ${elapsed} ms, before the timeout`);
    assert.ok(elapsed < 1000, `aborted only after ${elapsed} ms`);
  });

  test('only the attempts past their deadline are aborted', async () => {
    const signals: PushSignal[] = [];
    const h = helper(200, (b, signal) => {
      signals.push(signal);
      // The first attempt answers in 50 ms, the second never does.
      return signals.length === 1 ? sleep(50).then(() => undefined) : hang(b, signal);
    });
    const quick = h.consume(batch());
    const slow = h.consume(batch());
    await quick;
    await assert.rejects(slow, /timed out after 200ms/);
    assert.equal(signals[0]!.aborted, false, 'the attempt that finished in time was not aborted');
    assert.equal(signals[1]!.aborted, true);
  });

  test('timeouts still fire after a quiet period (the sweep restarts after stopping on an idle tick)', async () => {
    const h = helper(60, hang);
    await assert.rejects(h.consume(batch()), /timed out/);
    await sleep(100); // ticks find nothing in flight: the sweep stops
    const started = Date.now();
    await assert.rejects(h.consume(batch()), /timed out/);
    assert.ok(Date.now() - started < 1000);
  });

  test('timeout 0 means no deadline', async () => {
    let aborted = false;
    const h = helper(0, (_b, signal) => sleep(120).then(() => void (aborted = signal.aborted)));
    await h.consume(batch());
    assert.equal(aborted, false);
  });
});

describe('exporter helper queue handover (reload)', () => {
  function queued(push: PushFn, telemetry = new SelfTelemetry()): ExporterHelper {
    const config: HelperConfig = {
      timeout: { timeoutMs: 5000 },
      // Retries forever, 60 s apart: without the handover a batch would wait a minute.
      retry: { enabled: true, initialIntervalMs: 60_000, maxIntervalMs: 60_000, maxElapsedTimeMs: 0, multiplier: 1, randomizationFactor: 0 },
      queue: { enabled: true, numConsumers: 1, queueSize: 100, sizer: 'requests' },
    };
    return new ExporterHelper({ id: 'otlp/test', logger: pino({ level: 'silent' }), telemetry }, config, push);
  }

  const counted = async (telemetry: SelfTelemetry, name: string) => {
    const metric = (await telemetry.registry.getMetricsAsJSON()).find((m) => m.name === name);
    return (metric?.values ?? []).reduce((sum, v) => sum + Number(v.value), 0);
  };

  test('releases the batch waiting for a retry and the queued ones, in order, uncounted; the successor sends them first', async () => {
    const telemetry = new SelfTelemetry();
    let attempts = 0;
    const old = queued(() => {
      attempts++;
      return Promise.reject(new RetryableError('backend down'));
    }, telemetry);
    const batches = [batch(), batch(), batch()];
    for (const b of batches) await old.consume(b);
    await sleep(20); // the first attempt failed; the batch now waits 60 s for its retry
    const released = await old.releaseQueue();
    assert.equal(attempts, 1);
    assert.equal(released.length, 3);
    assert.equal(released[0], batches[0], 'the batch that was being retried comes first');
    assert.equal(await counted(telemetry, 'otelcol_exporter_send_failed_spans'), 0, 'nothing counted as failed');
    await assert.rejects(old.consume(batch()), /shutting down/);

    const sent: Batch[] = [];
    const successor = queued(async (b) => void sent.push(b));
    successor.adoptQueue(released);
    await successor.consume(batches[0]!.withResources(batches[0]!.resources));
    await successor.shutdown();
    assert.equal(sent.length, 4);
    assert.deepEqual(sent.slice(0, 3), released, 'adopted batches go before new ones');
  });

  test('without a sending queue, a caller waiting in a backoff is refused at once when a release is prepared', async () => {
    const config: HelperConfig = {
      timeout: { timeoutMs: 5000 },
      retry: { enabled: true, initialIntervalMs: 60_000, maxIntervalMs: 60_000, maxElapsedTimeMs: 0, multiplier: 1, randomizationFactor: 0 },
      queue: { enabled: false, numConsumers: 1, queueSize: 10, sizer: 'requests' },
    };
    const h = new ExporterHelper({ id: 'otlp/test', logger: pino({ level: 'silent' }), telemetry: new SelfTelemetry() }, config, () =>
      Promise.reject(new RetryableError('backend down')),
    );
    const waiting = h.consume(batch());
    await sleep(20); // failed once; now in a 60 s backoff
    h.prepareRelease();
    await assert.rejects(waiting, (err: Error) => err instanceof RetryableError && /shutting down/.test(err.message));
  });

  test('abandonQueue aborts an attempt in flight and counts what it drops as failed', async () => {
    const telemetry = new SelfTelemetry();
    const h = queued(hang, telemetry);
    await h.consume(batch());
    await h.consume(batch());
    await sleep(10);
    const draining = h.shutdown();
    await h.abandonQueue();
    await draining;
    assert.ok((await counted(telemetry, 'otelcol_exporter_send_failed_spans')) > 0);
    assert.equal(await counted(telemetry, 'otelcol_exporter_sent_spans'), 0);
  });

  test('an attempt in flight when the queue is released finishes; a success is counted as sent and not handed over', async () => {
    const telemetry = new SelfTelemetry();
    const h = queued(() => sleep(80).then(() => undefined), telemetry);
    await h.consume(batch());
    await h.consume(batch());
    await sleep(10);
    const released = await h.releaseQueue();
    assert.equal(released.length, 1, 'only the batch that had not started');
    assert.ok((await counted(telemetry, 'otelcol_exporter_sent_spans')) > 0, 'the attempt in flight completed and was counted');
  });
});
