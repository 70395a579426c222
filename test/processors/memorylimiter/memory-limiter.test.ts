import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import { RetryableError } from '../../../src/component/errors';
import { ConfigIssues, ConfigValidationError } from '../../../src/config/reader';
import { buildServiceConfig } from '../../../src/config/service-config';
import { Batch } from '../../../src/pdata/batch';
import { cgroupMemoryLimit, forceGc, liveMemory, totalMemory } from '../../../src/processors/memorylimiter/memory';
import {
  heapLimitMib,
  MemoryLimiter,
  MemoryLimiterProcessor,
  parseMemoryLimiterConfig,
  resolveLimits,
  type MemoryLimiterConfig,
} from '../../../src/processors/memorylimiter/memory-limiter';
import { HEAP_LIMIT_ENV, heapLimitAction } from '../../../src/service/node-flags';
import { SelfTelemetry } from '../../../src/service/telemetry';
import { Capture, configErrors, parseWith, testSettings } from '../../helpers/components';
import { hostInstance, obiTraceRequest } from '../../helpers/obi';
import { freePort } from '../../helpers/ports';
import { captureLogs, startService } from '../../helpers/service';

const MIB = 1024 * 1024;
const PATH = 'processors::memory_limiter';
const errors = (raw: unknown): string[] => configErrors(parseMemoryLimiterConfig, raw, PATH);
const parse = (raw: unknown): MemoryLimiterConfig => parseWith(parseMemoryLimiterConfig, raw, PATH);

void describe('memory_limiter config', () => {
  void test('defaults as in the Collector', () => {
    assert.deepEqual(parse({ check_interval: '1s', limit_mib: 400 }), {
      checkIntervalMs: 1000,
      limitMib: 400,
      spikeLimitMib: 0,
      limitPercentage: 0,
      spikeLimitPercentage: 0,
      minGcIntervalWhenSoftLimitedMs: 10_000,
      minGcIntervalWhenHardLimitedMs: 0,
      maxGcIntervalWhenSoftLimitedMs: 30_000,
      maxGcIntervalWhenHardLimitedMs: 30_000,
    });
  });

  void test('check_interval is required and must be positive', () => {
    assert.deepEqual(errors({ limit_mib: 100 }), [`${PATH}::check_interval: is required: how often memory is measured (1s is usual)`]);
    assert.deepEqual(errors({ check_interval: '0s', limit_mib: 100 }), [`${PATH}::check_interval: must be greater than 0`]);
    assert.deepEqual(errors({ check_interval: 5, limit_mib: 100 }), [`${PATH}::check_interval: expected a duration such as "500ms", "5s" or "1m", got 5`]);
  });

  void test('a limit is required; spikes must be smaller than their limits; percentages up to 100', () => {
    assert.deepEqual(errors({ check_interval: '1s' }), [`${PATH}: limit_mib or limit_percentage must be greater than 0`]);
    assert.deepEqual(errors({ check_interval: '1s', limit_mib: 100, spike_limit_mib: 100 }), [`${PATH}::spike_limit_mib: must be smaller than limit_mib (100), got 100`]);
    assert.deepEqual(errors({ check_interval: '1s', limit_percentage: 50, spike_limit_percentage: 60 }), [
      `${PATH}::spike_limit_percentage: must be smaller than limit_percentage (50), got 60`,
    ]);
    assert.deepEqual(errors({ check_interval: '1s', limit_percentage: 101 }), [`${PATH}::limit_percentage: must be between 0 and 100, got 101`]);
    assert.deepEqual(errors({ check_interval: '1s', limit_mib: -1 }), [`${PATH}::limit_mib: must be between 0 and 4294967295, got -1`]);
    assert.deepEqual(errors({ check_interval: '1s', limit_mib: 100, limit_ram: 3 }), [
      `${PATH}::limit_ram: unknown key (allowed: check_interval, limit_mib, spike_limit_mib, limit_percentage, spike_limit_percentage, min_gc_interval_when_soft_limited, min_gc_interval_when_hard_limited, max_gc_interval_when_soft_limited, max_gc_interval_when_hard_limited)`,
    ]);
  });

  void test('GC intervals are consistent', () => {
    assert.deepEqual(errors({ check_interval: '1s', limit_mib: 100, min_gc_interval_when_soft_limited: '1s', min_gc_interval_when_hard_limited: '2s' }), [
      `${PATH}::min_gc_interval_when_soft_limited: must not be smaller than min_gc_interval_when_hard_limited`,
    ]);
    assert.deepEqual(errors({ check_interval: '1s', limit_mib: 100, max_gc_interval_when_soft_limited: '5s' }), [
      `${PATH}::max_gc_interval_when_soft_limited: must not be smaller than min_gc_interval_when_soft_limited (or 0: no backoff)`,
      `${PATH}::max_gc_interval_when_soft_limited: must not be smaller than max_gc_interval_when_hard_limited`,
    ]);
    assert.deepEqual(errors({ check_interval: '1s', limit_mib: 100, max_gc_interval_when_soft_limited: 0, max_gc_interval_when_hard_limited: 0 }), []);
  });

  void test('limits: limit_mib wins, an unset spike is 20 %, percentages of the total', () => {
    const total = () => 1000 * MIB;
    assert.deepEqual(resolveLimits(parse({ check_interval: '1s', limit_mib: 200 }), total), { hardBytes: 200 * MIB, softBytes: 160 * MIB });
    assert.deepEqual(resolveLimits(parse({ check_interval: '1s', limit_mib: 200, spike_limit_mib: 50, limit_percentage: 10 }), total), { hardBytes: 200 * MIB, softBytes: 150 * MIB });
    assert.deepEqual(resolveLimits(parse({ check_interval: '1s', limit_percentage: 50, spike_limit_percentage: 10 }), total), { hardBytes: 500 * MIB, softBytes: 400 * MIB });
    assert.deepEqual(resolveLimits(parse({ check_interval: '1s', limit_percentage: 50 }), total), { hardBytes: 500 * MIB, softBytes: 400 * MIB });
  });

  void test('V8 heap limit: the smallest hard limit, at least 64 MiB', () => {
    assert.equal(heapLimitMib([]), undefined);
    assert.equal(heapLimitMib([parse({ check_interval: '1s', limit_mib: 300 }), parse({ check_interval: '1s', limit_mib: 200 })]), 200);
    assert.equal(heapLimitMib([parse({ check_interval: '1s', limit_percentage: 25 })], () => 2000 * MIB), 500);
    assert.equal(heapLimitMib([parse({ check_interval: '1s', limit_mib: 10 })]), 64);
  });
});

void describe('memory_limiter placement', () => {
  const doc = (processors: string[]) => ({
    receivers: { otlp: {} },
    processors: { memory_limiter: { check_interval: '1s', limit_mib: 100 }, filter: {} },
    exporters: { debug: {} },
    service: { pipelines: { traces: { receivers: ['otlp'], processors, exporters: ['debug'] } } },
  });

  void test('first in the pipeline is valid, anywhere else an error', () => {
    assert.doesNotThrow(() => buildServiceConfig(doc(['memory_limiter', 'filter'])));
    assert.throws(
      () => buildServiceConfig(doc(['filter', 'memory_limiter']), new ConfigIssues()),
      (err: unknown) =>
        err instanceof ConfigValidationError &&
        err.errors.join('\n') === 'service::pipelines::traces::processors[1]: processor "memory_limiter" must be the first processor of the pipeline',
    );
  });
});

void describe('cgroup memory limit', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  const root = (files: Record<string, string>): string => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-cgroup-'));
    dirs.push(dir);
    for (const [name, content] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      fs.writeFileSync(path.join(dir, name), content);
    }
    return dir;
  };

  void test('v2 memory.max: a number or "max"', () => {
    assert.equal(cgroupMemoryLimit(root({ 'memory.max': '268435456\n' })), 256 * MIB);
    assert.equal(cgroupMemoryLimit(root({ 'memory.max': 'max\n' })), undefined);
    assert.equal(cgroupMemoryLimit(root({ 'memory.max': 'garbage\n' })), undefined);
  });

  void test('v1 memory.limit_in_bytes: a number, or the huge value that means none', () => {
    assert.equal(cgroupMemoryLimit(root({ 'memory/memory.limit_in_bytes': '536870912\n' })), 512 * MIB);
    assert.equal(cgroupMemoryLimit(root({ 'memory/memory.limit_in_bytes': '9223372036854771712\n' })), undefined);
  });

  void test('v2 is read before v1; nothing readable means no limit', () => {
    assert.equal(cgroupMemoryLimit(root({ 'memory.max': '1048576', 'memory/memory.limit_in_bytes': '2097152' })), MIB);
    assert.equal(cgroupMemoryLimit(root({})), undefined);
  });

  void test('the total is the cgroup limit when below the machine memory, else the machine memory', () => {
    assert.deepEqual(totalMemory(root({ 'memory.max': String(256 * MIB) }), 1024 * MIB), { bytes: 256 * MIB, source: 'cgroup' });
    assert.deepEqual(totalMemory(root({ 'memory.max': String(4096 * MIB) }), 1024 * MIB), { bytes: 1024 * MIB, source: 'machine' });
    assert.deepEqual(totalMemory(root({ 'memory.max': 'max' }), 1024 * MIB), { bytes: 1024 * MIB, source: 'machine' });
  });
});

/** A limiter driven by hand: memory and time are set by the test, GCs are counted. */
function harness(raw: Record<string, unknown>) {
  const config = parse({ check_interval: '1s', limit_mib: 100, ...raw });
  const state = { usedMib: 0, now: 0, gcs: 0, afterGcMib: undefined as number | undefined };
  const logs = captureLogs('debug');
  const limiter = new MemoryLimiter('memory_limiter', config, resolveLimits(config), logs.logger, {
    readMemory: () => state.usedMib * MIB,
    gc: () => {
      state.gcs++;
      if (state.afterGcMib !== undefined) state.usedMib = state.afterGcMib;
    },
    now: () => state.now,
  });
  const tick = (usedMib?: number, advanceMs = 1000): boolean => {
    if (usedMib !== undefined) state.usedMib = usedMib;
    state.now += advanceMs;
    limiter.check();
    return limiter.refusing;
  };
  return { limiter, state, tick, logs };
}

void describe('memory_limiter decisions', () => {
  void test('refuses from the soft limit (limit - 20 %) on, accepts again below it', () => {
    const { tick, state } = harness({});
    assert.equal(tick(79), false);
    assert.equal(tick(80), true, 'soft limit 80 MiB reached');
    assert.equal(state.gcs, 0, 'no GC in the first 10 s (min_gc_interval_when_soft_limited)');
    assert.equal(tick(79.9), false);
  });

  void test('above the hard limit a GC is forced at once; above the soft limit at most every min_gc_interval_when_soft_limited', () => {
    const { tick, state } = harness({ max_gc_interval_when_soft_limited: 0, max_gc_interval_when_hard_limited: 0 });
    assert.equal(tick(100), true);
    assert.equal(state.gcs, 1, 'hard limit: GC');
    assert.equal(tick(100), true);
    assert.equal(state.gcs, 2, 'min_gc_interval_when_hard_limited is 0');
    for (let i = 0; i < 9; i++) tick(90);
    assert.equal(state.gcs, 2, 'soft only: within 10 s of the last GC');
    tick(90, 1001);
    assert.equal(state.gcs, 3, 'soft: more than 10 s after the last GC');
  });

  void test('a GC that helps ends the refusal at the next check', () => {
    const { tick, state } = harness({});
    state.afterGcMib = 40;
    assert.equal(tick(120), true, 'this check refuses: memory freed by a GC is only seen later');
    assert.equal(state.gcs, 1);
    assert.equal(tick(), false);
  });

  void test('an ineffective GC backs off: the interval doubles up to the max', () => {
    const { tick, state, logs } = harness({ check_interval: '1s', min_gc_interval_when_hard_limited: 0, max_gc_interval_when_hard_limited: '4s' });
    const gcAt: number[] = [];
    for (let i = 0; i < 14; i++) {
      const before = state.gcs;
      tick(150);
      if (state.gcs > before) gcAt.push(state.now / 1000);
    }
    // GC at 1 s; judged useless at 2 s: next after > 1.9 s (0.95 * check_interval doubled), then 4 s (cap).
    assert.deepEqual(gcAt, [1, 3, 7, 11]);
    assert.ok(logs.lines.some((l) => l.msg === 'the forced garbage collection freed little memory; forcing it less often'));
  });

  void test('memory falling on its own resets the backoff', () => {
    const { tick, state } = harness({ min_gc_interval_when_hard_limited: 0, max_gc_interval_when_hard_limited: '30s' });
    for (let i = 0; i < 16; i++) tick(150);
    assert.equal(state.gcs, 4, 'GCs at 1, 3, 7 and 15 s; the next not before 30.2 s');
    assert.equal(tick(10), false);
    tick(150);
    assert.equal(state.gcs, 5, 'GC again at once (18 s)');
  });
});

void describe('memory_limiter processor', () => {
  const batch = new Batch('traces', [{ bytes: new Uint8Array(0), attributes: new Map(), itemCount: 3 }] as never);

  void test('refuses with a retryable error and before reading; counts with the Collector names', async () => {
    const telemetry = new SelfTelemetry();
    const next = new Capture();
    const config = parse({ check_interval: '1s', limit_mib: 100 });
    let used = 0;
    const limiter = new MemoryLimiter('memory_limiter', config, resolveLimits(config), pino({ level: 'silent' }), { readMemory: () => used, gc: () => undefined, now: () => 0 });
    const processor = new MemoryLimiterProcessor(testSettings('memory_limiter', telemetry), limiter, 'traces', next);
    await processor.start();
    try {
      assert.equal(processor.wouldRefuse(), undefined);
      await processor.consume(batch);
      used = 90 * MIB;
      limiter.check();
      assert.equal(processor.wouldRefuse(), 'memory usage is above the soft limit of memory_limiter (80 MiB)');
      await assert.rejects(processor.consume(batch), (err: unknown) => err instanceof RetryableError && /above the soft limit/.test(err.message));
      assert.equal(next.batches.length, 1);
      const text = await telemetry.registry.metrics();
      assert.match(text, /otelcol_processor_memory_limiter_accepted_spans\{processor="memory_limiter"\} 3/);
      assert.match(text, /otelcol_processor_memory_limiter_refused_spans\{processor="memory_limiter"\} 3/);
    } finally {
      await processor.shutdown();
    }
    assert.equal(processor.wouldRefuse(), undefined, 'a stopped limiter no longer refuses');
  });

  void test('the real reader and GC: memory held by Buffers is seen, and seen to fall after a forced GC', async () => {
    const before = liveMemory();
    // Held only inside this call, garbage once it returns.
    const withBuffers = ((held: Buffer[]) => liveMemory() + held.length * 0)(Array.from({ length: 64 }, () => Buffer.allocUnsafe(MIB).fill(1)));
    assert.ok(withBuffers >= before + 48 * MIB, `${withBuffers} bytes measured, ${before} before`);
    forceGc();
    // Backing stores are freed by a task after the collection.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(liveMemory() < withBuffers - 48 * MIB, `${liveMemory()} bytes after GC, ${withBuffers} before`);
    assert.equal((globalThis as { gc?: unknown }).gc, undefined, 'gc stays off the global object');
  });
});

void describe('V8 heap limit at start', () => {
  const proc = (over: Partial<Parameters<typeof heapLimitAction>[1]> = {}) => ({
    execArgv: ['--max-semi-space-size=2'],
    argv: ['/usr/bin/node', '/app/dist/src/cli.js', '--config', 'c.yaml'],
    env: { PATH: '/bin' },
    execPath: '/usr/bin/node',
    canExecve: true,
    ...over,
  });

  void test('re-executes once with the flag where execve exists, else names it', () => {
    assert.deepEqual(heapLimitAction(200, proc()), {
      kind: 'execve',
      args: ['/usr/bin/node', '--max-semi-space-size=2', '--max-old-space-size=200', '/app/dist/src/cli.js', '--config', 'c.yaml'],
      env: { PATH: '/bin', [HEAP_LIMIT_ENV]: '1' },
    });
    assert.deepEqual(heapLimitAction(200, proc({ canExecve: false })), { kind: 'warn', flag: '--max-old-space-size=200' });
  });

  void test('nothing without a limiter, after the re-execution, or with a limit already given', () => {
    assert.equal(heapLimitAction(undefined, proc()).kind, 'none');
    assert.equal(heapLimitAction(200, proc({ env: { [HEAP_LIMIT_ENV]: '1' } })).kind, 'none');
    assert.equal(heapLimitAction(200, proc({ execArgv: ['--max-old-space-size=512'] })).kind, 'none');
    assert.equal(heapLimitAction(200, proc({ env: { NODE_OPTIONS: '--enable-source-maps --max_old_space_size=512' } })).kind, 'none');
  });
});

void describe('memory_limiter in a running service', () => {
  void test('one limiter for every pipeline listing the id; above its limit requests are refused unread with 503 + Retry-After', async () => {
    const port = await freePort();
    const logs = captureLogs('info');
    // 1 MiB: below what any node process uses, so the limiter refuses from its first check on.
    const service = await startService(
      {
        receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${port}` } } } },
        processors: { memory_limiter: { check_interval: '1s', limit_mib: 1 } },
        exporters: { debug: {} },
        service: {
          telemetry: { metrics: { level: 'none' } },
          pipelines: {
            traces: { receivers: ['otlp'], processors: ['memory_limiter'], exporters: ['debug'] },
            metrics: { receivers: ['otlp'], processors: ['memory_limiter'], exporters: ['debug'] },
          },
        },
      },
      logs.logger,
    );
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v1/traces`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf' },
        body: obiTraceRequest([hostInstance('web-1', 4242)], 2),
      });
      assert.equal(res.status, 503);
      assert.equal(res.headers.get('retry-after'), '1');
      assert.match(await res.text(), /memory usage is above the soft limit of memory_limiter/);
      assert.equal(logs.lines.filter((l) => l.msg === 'memory limiter configured').length, 1, 'one limiter for both pipelines');
      assert.ok(logs.lines.some((l) => l.msg === 'refused export request before reading it; the client should retry'));
    } finally {
      await service.shutdown();
    }
  });
});
