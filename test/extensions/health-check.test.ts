import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HealthCheck, healthCheckFactory } from '../../src/extensions/healthcheck/health-check';
import { configErrors, parseWith } from '../helpers/components';
import { freePorts, waitFor } from '../helpers/ports';
import { startService } from '../helpers/service';

// health_check and memory_limiter refusals, as the reference Collector v0.160.0 answers (checked by
// hand against it, docs/health-check.md): by default a refusing memory_limiter does not change the
// answer; with component_health.include_recoverable_errors, its recoverable error makes the
// answer 500 once it has lasted recovery_duration.

async function health(port: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

test('a memory_limiter refusing data: 200 by default, 500 with component_health after recovery_duration', { timeout: 30_000 }, async () => {
  const [http, plain, components] = await freePorts(3);
  const service = await startService({
    receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${http}` } } } },
    // Any Node process uses more than 2 MiB: this limiter refuses from its first check on.
    processors: { memory_limiter: { check_interval: '100ms', limit_mib: 2, spike_limit_mib: 1 } },
    exporters: { debug: {} },
    extensions: {
      health_check: { endpoint: `127.0.0.1:${plain}` },
      'health_check/components': { endpoint: `127.0.0.1:${components}`, component_health: { include_recoverable_errors: true, recovery_duration: '400ms' } },
    },
    service: {
      extensions: ['health_check', 'health_check/components'],
      pipelines: { traces: { receivers: ['otlp'], processors: ['memory_limiter'], exporters: ['debug'] } },
      telemetry: { metrics: { level: 'none' } },
    },
  });
  try {
    const refused = await fetch(`http://127.0.0.1:${http}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"x"}]}]}]}' });
    await refused.arrayBuffer();
    assert.equal(refused.status, 503, 'the memory_limiter refuses');
    let unhealthy = { status: 0, body: {} as Record<string, unknown> };
    await waitFor('component_health to turn unhealthy', async () => (unhealthy = await health(components)).status === 500, 10_000);
    assert.equal(unhealthy.body.healthy, false);
    assert.equal(unhealthy.body.component, 'processor:memory_limiter');
    assert.equal(unhealthy.body.error, 'data refused due to high memory usage');
    const untouched = await health(plain);
    assert.equal(untouched.status, 200, 'without component_health the answer does not change (the Collector`s default)');
    assert.equal(untouched.body.status, 'Server available');
  } finally {
    await service.shutdown();
  }
});

test('component_health: recovery_duration\'s clock, recovery, and the defaults', async () => {
  let now = 1_000_000;
  const config = parseWith((n) => healthCheckFactory.parseConfig(n), { endpoint: '127.0.0.1:0', component_health: { include_recoverable_errors: true, recovery_duration: '1s' } }, 'extensions::health_check');
  const check = new HealthCheck(config, () => now);
  check.onStatus('ready');
  const failing = (): unknown => (check as unknown as { failing(): unknown }).failing();
  check.onComponentStatus('processor:memory_limiter', { status: 'recoverable_error', error: 'e' });
  now += 999;
  // A repeated event does not restart the clock.
  check.onComponentStatus('processor:memory_limiter', { status: 'recoverable_error', error: 'e' });
  assert.equal(failing(), undefined);
  now += 1;
  assert.equal((failing() as [string])[0], 'processor:memory_limiter');
  check.onComponentStatus('processor:memory_limiter', { status: 'ok' });
  assert.equal(failing(), undefined, 'recovered');
  // Defaults: no component_health at all; with it, recoverable errors excluded and 5 min.
  assert.equal(parseWith((n) => healthCheckFactory.parseConfig(n), {}, 'extensions::health_check').componentHealth, undefined);
  assert.deepEqual(parseWith((n) => healthCheckFactory.parseConfig(n), { component_health: {} }, 'extensions::health_check').componentHealth, { includeRecoverableErrors: false, recoveryDurationMs: 300_000 });
  assert.deepEqual(configErrors((n) => healthCheckFactory.parseConfig(n), { component_health: { recovery_duration: 5, include_recoverable: true } }, 'extensions::health_check'), [
    'extensions::health_check::component_health::include_recoverable: unknown key (allowed: include_recoverable_errors, include_permanent_errors, recovery_duration)',
    'extensions::health_check::component_health::recovery_duration: expected a duration such as "500ms", "5s" or "1m", got 5',
  ]);
});
