import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { SamplingView } from '../../src/component/component';
import type { Service } from '../../src/service/service';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';
import { freePorts } from '../helpers/ports';
import { startService } from '../helpers/service';
import { MAX_RECENT_DROPPED, MAX_SAMPLING_SERVICES, SamplingStats } from '../../src/service/sampling-stats';

// GET /api/v1/sampling: per service the spans received, kept by the filter and kept by each
// sampler; traces decided per tail_sampling policy; the traces sampled out, with who decided.

describe('admin API sampling view', () => {
  const token = 'sampling-token';
  let service: Service;
  let httpPort: number;
  let adminPort: number;
  const kept = hostInstance('web-1', 4242, 'backend');
  const filteredOut = hostInstance('web-1', 4243, 'batch');
  const errorTrace = Buffer.from('0af7651916cd43dd8448eb211c80319c', 'hex');
  const okTrace = Buffer.from('4bf92f3577b34da6a3ce929d0e0e4736', 'hex');

  const api = (p: string, init: RequestInit = {}) => fetch(`http://127.0.0.1:${adminPort}${p}`, { ...init, headers: { authorization: `Bearer ${token}` } });
  const view = async (): Promise<SamplingView> => {
    const res = await api('/api/v1/sampling');
    assert.equal(res.status, 200);
    return (await res.json()) as SamplingView;
  };

  before(async () => {
    [httpPort, adminPort] = await freePorts(2);
    service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: {
        'filter/obi': { keep: [{ 'service.instance.id': 'web-1:4242' }] },
        tail_sampling: { decision_wait: '200ms', policies: [{ name: 'errors', type: 'status_code', status_code: { status_codes: ['ERROR'] } }] },
        probabilistic_sampler: { sampling_percentage: 0 },
      },
      exporters: { debug: { verbosity: 'basic' } },
      extensions: { admin: { endpoint: `127.0.0.1:${adminPort}`, token } },
      service: {
        extensions: ['admin'],
        pipelines: {
          traces: { receivers: ['otlp'], processors: ['filter/obi', 'tail_sampling'], exporters: ['debug'] },
          'traces/probabilistic': { receivers: ['otlp'], processors: ['probabilistic_sampler'], exporters: ['debug'] },
        },
        telemetry: { metrics: { level: 'none' } },
      },
    });
    const body = encodeTraces([
      obiResourceSpans(kept, [obiSpan({ traceId: errorTrace, statusCode: 2 }), obiSpan({ traceId: errorTrace })]),
      obiResourceSpans(kept, [obiSpan({ traceId: okTrace })]),
      obiResourceSpans(filteredOut, [obiSpan()]),
    ]);
    const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
    assert.equal(res.status, 200);
  });

  after(async () => {
    await service?.shutdown();
  });

  test('shows spans seen and kept per service, per policy, and the sampled-out traces', async () => {
    // The tail_sampling decision comes after decision_wait: wait for it, not for a fixed time.
    let v = await view();
    for (let i = 0; v.policies.length < 2 && i < 300; i++) {
      await new Promise((r) => setTimeout(r, 50));
      v = await view();
    }
    assert.deepEqual(v.services, [
      { service: 'backend', seen: 3, keptByFilter: 3, keptBySampling: 0, samplers: [{ processor: 'probabilistic_sampler', seen: 3, kept: 0 }, { processor: 'tail_sampling', seen: 3, kept: 2 }] },
      { service: 'batch', seen: 1, keptByFilter: 0, keptBySampling: 0, samplers: [{ processor: 'probabilistic_sampler', seen: 1, kept: 0 }] },
    ]);
    assert.deepEqual(v.policies, [
      { processor: 'tail_sampling', policy: null, sampled: 0, notSampled: 1 },
      { processor: 'tail_sampling', policy: 'errors', sampled: 1, notSampled: 0 },
    ]);
    assert.equal(v.maxRecentDropped, 100);
    const fromTail = v.recentDropped.filter((d) => d.processor === 'tail_sampling');
    assert.deepEqual(
      fromTail.map(({ at, ...d }) => (assert.ok(!Number.isNaN(Date.parse(at))), d)),
      [{ traceId: okTrace.toString('hex'), service: 'backend', processor: 'tail_sampling', policy: null, reason: 'no policy sampled' }],
    );
    // probabilistic_sampler: one entry per resource (its first dropped span), with its mode; at 0 % the
    // Collector labels every decision sampling_priority.
    const fromProbabilistic = v.recentDropped.filter((d) => d.processor === 'probabilistic_sampler');
    assert.equal(fromProbabilistic.length, 3);
    assert.deepEqual(new Set(fromProbabilistic.map((d) => d.reason)), new Set(['mode hash_seed, sampling_percentage 0']));
    assert.deepEqual(fromProbabilistic.map((d) => [d.traceId, d.policy]).filter(([id]) => id === errorTrace.toString('hex')), [[errorTrace.toString('hex'), 'sampling_priority']]);
  });

  test('is read only', async () => {
    const res = await fetch(`http://127.0.0.1:${adminPort}/api/v1/sampling`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'sec-fetch-site': 'same-origin' } });
    assert.equal(res.status, 405);
  });
});

describe('SamplingStats', () => {
  test('keeps the last MAX_RECENT_DROPPED sampled-out traces, newest first', () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const stats = new SamplingStats(() => now);
    for (let i = 0; i < MAX_RECENT_DROPPED + 7; i++) {
      now += 1000;
      stats.dropped({ traceId: String(i), service: 's', processor: 'p', policy: null, reason: 'r' });
    }
    const recent = stats.view().recentDropped;
    assert.equal(recent.length, MAX_RECENT_DROPPED);
    assert.equal(recent[0]!.traceId, String(MAX_RECENT_DROPPED + 6));
    assert.equal(recent[0]!.at, new Date(now).toISOString());
    assert.equal(recent.at(-1)!.traceId, '7');
  });

  test('counts per service, a service without a name apart from one named like the key', () => {
    const stats = new SamplingStats();
    stats.seen(new Map([['service.name', 'a']]), 5);
    stats.seen(new Map(), 2);
    stats.sampled('tail_sampling', new Map([['service.name', 'a']]), 5, 1);
    stats.sampled('probabilistic_sampler', new Map([['service.name', 'a']]), 5, 3);
    assert.deepEqual(stats.view().services, [
      { service: null, seen: 2, keptByFilter: null, keptBySampling: null, samplers: [] },
      { service: 'a', seen: 5, keptByFilter: null, keptBySampling: 1, samplers: [{ processor: 'probabilistic_sampler', seen: 5, kept: 3 }, { processor: 'tail_sampling', seen: 5, kept: 1 }] },
    ]);
  });

  test('the cached lookups follow evictions: a service or policy counted again after it went starts from zero', () => {
    const stats = new SamplingStats();
    const first = new Map([['service.name', 'first']]);
    stats.sampled('p', first, 4, 4);
    stats.traceDecided('p', 'first-policy', true);
    // Past the bounds, the first counted go.
    for (let i = 0; i < MAX_SAMPLING_SERVICES; i++) {
      stats.seen(new Map([['service.name', `s${i}`]]), 1);
      stats.traceDecided('p', `policy-${i}`, false);
    }
    assert.equal(stats.view().services.find((s) => s.service === 'first'), undefined);
    assert.equal(stats.view().policies.find((p) => p.policy === 'first-policy'), undefined);
    stats.sampled('p', first, 2, 1);
    stats.traceDecided('p', 'first-policy', true);
    assert.deepEqual(stats.view().services.find((s) => s.service === 'first')?.samplers, [{ processor: 'p', seen: 2, kept: 1 }]);
    assert.deepEqual(stats.view().policies.find((p) => p.policy === 'first-policy'), { processor: 'p', policy: 'first-policy', sampled: 1, notSampled: 0 });
    assert.equal(stats.view().policies.length, MAX_SAMPLING_SERVICES);
  });
});
