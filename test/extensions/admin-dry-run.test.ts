import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { InstanceView } from '../../src/component/component';
import type { Service } from '../../src/service/service';
import { encodeTraces, hostInstance, k8sInstance, obiResourceSpans, obiSpan, type ObiInstance } from '../helpers/obi';
import { freePorts } from '../helpers/ports';
import { startService } from '../helpers/service';

// POST /api/v1/filters/{id}/dry-run: what proposed lists would decide for every known instance,
// decided by the filter's own matcher, with nothing changed.

interface Decision {
  id: string;
  kept: boolean | null;
  selector: string | null;
}

describe('admin API dry run', () => {
  const token = 'dry-run-token';
  let service: Service;
  let httpPort: number;
  let adminPort: number;
  const web = hostInstance('web-1', 4242, 'backend');
  const other = hostInstance('web-1', 4243, 'backend');
  const pod = k8sInstance('shop', 'edge-1', 'envoy', 'envoy');
  // One astral character (a surrogate pair in JavaScript strings) after "app-".
  const astral: ObiInstance = { instanceId: 'app-😀', serviceName: 'app' };

  const api = (p: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${adminPort}${p}`, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string> | undefined) } });
  const dryRun = (lists: unknown) => api('/api/v1/filters/filter%2Fobi/dry-run', { method: 'POST', body: JSON.stringify(lists) });
  const decisions = async (lists: unknown): Promise<Decision[]> => {
    const res = await dryRun(lists);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { instances: Decision[] };
    assert.deepEqual(Object.keys(body), ['instances']);
    return body.instances;
  };
  const current = async () => ((await (await api('/api/v1/instances')).json()) as InstanceView[]).map((i) => [i.id, i.kept, i.selector]);

  before(async () => {
    [httpPort, adminPort] = await freePorts(2);
    service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: { 'filter/obi': { keep: [{ 'service.instance.id': 'web-1:4242' }] } },
      exporters: { debug: { verbosity: 'basic' } },
      extensions: { admin: { endpoint: `127.0.0.1:${adminPort}`, token } },
      service: { extensions: ['admin'], pipelines: { traces: { receivers: ['otlp'], processors: ['filter/obi'], exporters: ['debug'] } }, telemetry: { metrics: { level: 'none' } } },
    });
    const body = encodeTraces([web, other, pod, astral].map((i) => obiResourceSpans(i, [obiSpan()])));
    const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
    assert.equal(res.status, 200);
  });

  after(async () => {
    await service?.shutdown();
  });

  test('answers every known instance as the proposed lists would decide it, changing nothing', async () => {
    const before = await current();
    assert.deepEqual(before, [
      ['app-😀', false, null],
      ['shop.edge-1.envoy', false, null],
      ['web-1:4242', true, 'service.instance.id="web-1:4242"'],
      ['web-1:4243', false, null],
    ]);
    assert.deepEqual(await decisions({ keep: [{ pid: 4243 }, { 'k8s.namespace.name': 'shop' }], drop: [{ 'service.name': 'envoy' }] }), [
      { id: 'app-😀', kept: false, selector: null },
      { id: 'shop.edge-1.envoy', kept: false, selector: 'service.name="envoy"' },
      { id: 'web-1:4242', kept: false, selector: null },
      { id: 'web-1:4243', kept: true, selector: 'pid=4243' },
    ]);
    // Without `keep` everything is kept unless dropped.
    assert.deepEqual(
      (await decisions({ drop: [{ 'host.name': 'web-*' }] })).map((d) => [d.id, d.kept]),
      [
        ['app-😀', true],
        ['shop.edge-1.envoy', true],
        ['web-1:4242', false],
        ['web-1:4243', false],
      ],
    );
    assert.deepEqual(await current(), before, 'the inventory is unchanged');
    assert.deepEqual(await (await api('/api/v1/filters')).json(), { 'filter/obi': { keep: [{ 'service.instance.id': 'web-1:4242' }], drop: [] } });
  });

  test("uses the server's own glob: `?` is one code point, so it matches an astral character a UTF-16 matcher sees as two", async () => {
    const one = (await decisions({ keep: [{ 'service.instance.id': 'app-?' }] })).find((d) => d.id === astral.instanceId);
    const two = (await decisions({ keep: [{ 'service.instance.id': 'app-??' }] })).find((d) => d.id === astral.instanceId);
    assert.deepEqual(one, { id: astral.instanceId, kept: true, selector: 'service.instance.id="app-?"' });
    assert.deepEqual(two, { id: astral.instanceId, kept: false, selector: null });
    // A naive glob (`?` as a RegExp `.` without the u flag) decides both the other way round.
    assert.equal(/^app-.$/s.test(astral.instanceId), false);
    assert.equal(/^app-..$/s.test(astral.instanceId), true);
  });

  test('invalid lists get the same 400 as PUT; unknown ids 404; other methods 405; a token is required', async () => {
    const invalid = { keep: [{ pid: 'x' }], drop: [{ 'host.name': '/(/' }], extra: 1 };
    const dry = await dryRun(invalid);
    assert.equal(dry.status, 400);
    const dryBody = (await dry.json()) as { error: string; errors: string[] };
    assert.deepEqual(dryBody.errors.map((e) => e.split(': ')[0]!).sort(), ['extra', 'processors::filter/obi::drop[0]::host.name', 'processors::filter/obi::keep[0]::pid'].sort());
    const put = await api('/api/v1/filters/filter%2Fobi', { method: 'PUT', body: JSON.stringify(invalid) });
    assert.equal(put.status, 400);
    assert.deepEqual(await put.json(), dryBody);
    assert.equal((await dryRun([])).status, 400);
    assert.equal((await api('/api/v1/filters/filter%2Fobi/dry-run', { method: 'POST', body: '{not json' })).status, 400);

    assert.equal((await api('/api/v1/filters/filter%2Fnope/dry-run', { method: 'POST', body: '{}' })).status, 404);
    assert.equal((await api('/api/v1/filters/filter%2Fobi/dry-run')).status, 405);
    const anonymous = await fetch(`http://127.0.0.1:${adminPort}/api/v1/filters/filter%2Fobi/dry-run`, { method: 'POST', body: '{}' });
    assert.equal(anonymous.status, 401);
    // A body with neither list is valid: keep everything.
    assert.ok((await decisions({})).every((d) => d.kept === true));
  });
});
