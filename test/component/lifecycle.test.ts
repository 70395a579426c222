import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import type { AnyFactory, Component, Consumer, Host } from '../../src/component/component';
import { allFactories, findFactory, knownTypes } from '../../src/components';
import { parseRequest } from '../../src/pdata/scan';
import type { Signal } from '../../src/pdata/batch';
import { hostInstance, obiTraceRequest } from '../helpers/obi';
import { Capture, parseWith, testSettings } from '../helpers/components';
import { metricsBatch, obiResourceMetrics } from '../helpers/obi-metrics';

// One lifecycle contract, run over every factory in the registry: create with a minimal config,
// shutdown without start, start + shutdown, shutdown twice, and consume after shutdown settles
// (resolves or rejects with an Error) instead of hanging or throwing synchronously.

const storageDir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-lifecycle-'));
after(() => fs.rmSync(storageDir, { recursive: true, force: true }));

/** The smallest config each component needs on this machine (loopback, port 0, nowhere to send). */
const MINIMAL: Record<string, () => unknown> = {
  'receiver/otlp': () => ({ protocols: { grpc: { endpoint: '127.0.0.1:0' }, http: { endpoint: '127.0.0.1:0' } } }),
  'processor/memory_limiter': () => ({ check_interval: '1s', limit_mib: 4096, spike_limit_mib: 512 }),
  'processor/filter': () => ({ keep: [{ 'service.instance.id': 'h:1000' }] }),
  'processor/probabilistic_sampler': () => ({ sampling_percentage: 50 }),
  'processor/tail_sampling': () => ({ policies: [{ name: 'all', type: 'always_sample' }] }),
  'exporter/otlp': () => ({ endpoint: '127.0.0.1:1', tls: { insecure: true }, retry_on_failure: { enabled: false } }),
  'exporter/otlphttp': () => ({ endpoint: 'http://127.0.0.1:1', retry_on_failure: { enabled: false } }),
  'exporter/debug': () => ({ verbosity: 'basic' }),
  'exporter/prometheus': () => ({ endpoint: '127.0.0.1:0' }),
  'exporter/prometheusremotewrite': () => ({ endpoint: 'http://127.0.0.1:1/api/v1/write' }),
  'connector/forward': () => ({}),
  'connector/spanmetrics': () => ({}),
  'connector/servicegraph': () => ({}),
  'extension/health_check': () => ({ endpoint: '127.0.0.1:0' }),
  'extension/admin': () => ({ endpoint: '127.0.0.1:0' }),
  'extension/file_storage': () => ({ directory: fs.mkdtempSync(path.join(storageDir, 'fs-')) }),
  'extension/bearertokenauth': () => ({ token: 'lifecycle-token' }),
};

const host: Host = {
  reportStatus: () => undefined,
  extensions: new Map(),
  control: { instances: () => [], sampling: () => ({ services: [], policies: [], recentDropped: [], maxRecentDropped: 100 }), liveSettings: () => new Map(), setLive: () => [], saveLive: async () => undefined, dryRun: () => ({ errors: [], instances: [] }) },
};

function key(factory: AnyFactory): string {
  return `${factory.kind}/${factory.type}`;
}

/** A new component and the signal it consumes (undefined for receivers and extensions). */
function create(factory: AnyFactory): { component: Component & Partial<Consumer>; signal: Signal | undefined } {
  const config = parseWith((n) => factory.parseConfig(n), MINIMAL[key(factory)]!());
  const settings = testSettings(factory.type);
  const next = new Map<Signal, Consumer>([
    ['traces', new Capture()],
    ['metrics', new Capture()],
  ]);
  switch (factory.kind) {
    case 'receiver':
      return { component: factory.create(settings, config, next), signal: undefined };
    case 'processor':
      return { component: factory.create(settings, config, factory.signals[0]!, new Capture()), signal: factory.signals[0] };
    case 'exporter':
      return { component: factory.create(settings, config), signal: factory.signals[0] };
    case 'connector': {
      const from = factory.routes[0]![0];
      return { component: factory.create(settings, config, from, next), signal: from };
    }
    case 'extension':
      return { component: factory.create(settings, config), signal: undefined };
  }
}

function batchFor(signal: Signal): ReturnType<typeof parseRequest>['batch'] {
  if (signal === 'traces') return parseRequest('traces', obiTraceRequest([hostInstance('h', 1000)], 2)).batch;
  return metricsBatch([obiResourceMetrics(hostInstance('h', 1000), { memoryBytes: 1000, cpuSeconds: 2 })]);
}

void describe('component lifecycle, every factory', () => {
  void test('every registered factory has a case here', () => {
    assert.deepEqual(allFactories().map(key).filter((k) => !(k in MINIMAL)), []);
  });

  void test('a lookup loads its component only, and knownTypes loads none', () => {
    // Run in a fresh process: this one has loaded every component above.
    const script = `
      const c = require(${JSON.stringify(require.resolve('../../src/components'))});
      const loaded = () => Object.keys(require.cache).filter((f) => /[\\/](receivers|processors|exporters|connectors|extensions)[\\/]/.test(f)).length;
      const before = loaded();
      c.knownTypes('processor');
      const afterTypes = loaded();
      c.findFactory('processor', 'filter');
      const afterFilter = loaded();
      const tail = Object.keys(require.cache).some((f) => f.includes('tailsampling'));
      process.stdout.write(JSON.stringify({ before, afterTypes, afterFilter, tail }));`;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as Record<string, number | boolean>;
    assert.equal(out.before, 0);
    assert.equal(out.afterTypes, 0);
    assert.ok((out.afterFilter as number) > 0);
    assert.equal(out.tail, false);
    for (const factory of allFactories()) assert.equal(findFactory(factory.kind, factory.type), factory);
    assert.deepEqual(knownTypes('receiver'), ['otlp']);
  });

  for (const factory of allFactories()) {
    void describe(key(factory), () => {
      void test('shutdown without start, and twice', async () => {
        const { component } = create(factory);
        await component.shutdown();
        await component.shutdown();
      });

      void test('start, shutdown, shutdown again', async () => {
        const { component } = create(factory);
        await component.start(host);
        await component.shutdown();
        await component.shutdown();
      });

      if (factory.kind === 'receiver' || factory.kind === 'extension') return; // nothing to consume
      void test('consume after shutdown settles', async () => {
        const { component, signal } = create(factory);
        await component.start(host);
        await component.shutdown();
        let outcome: unknown;
        try {
          await component.consume!(batchFor(signal!));
          outcome = 'resolved';
        } catch (err) {
          outcome = err;
        }
        assert.ok(outcome === 'resolved' || outcome instanceof Error, `settled with ${String(outcome)}`);
      });
    });
  }
});
