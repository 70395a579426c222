import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { InstanceView } from '../../src/component/component';
import type { Service } from '../../src/service/service';
import { encodeTraces, obiResourceSpans, obiSpan, resourceAttributes, type ObiInstance } from '../helpers/obi';
import { freePorts } from '../helpers/ports';
import { startService } from '../helpers/service';

// The dry run of a filter with OTTL conditions (trace_conditions): resource conditions decide the
// preview as they decide data, read from the resource's exact bytes (an int 3 and a double 3.0
// differ there, not in the decoded attributes); span conditions are only counted in a note.

interface Decision {
  id: string;
  kept: boolean | null;
  selector: string | null;
  note?: string;
}

describe('admin API dry run with OTTL resource conditions', () => {
  const token = 'dry-run-ottl-token';
  let service: Service;
  let httpPort: number;
  let adminPort: number;
  const SPAN_NOTE = 'spans may be dropped by 1 span condition';

  const api = (p: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${adminPort}${p}`, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string> | undefined) } });
  const decisions = async (lists: unknown): Promise<Decision[]> => {
    const res = await api('/api/v1/filters/filter%2Fobi/dry-run', { method: 'POST', body: JSON.stringify(lists) });
    assert.equal(res.status, 200);
    return ((await res.json()) as { instances: Decision[] }).instances;
  };
  const current = async () => ((await (await api('/api/v1/instances')).json()) as InstanceView[]).map((i) => ({ id: i.id, kept: i.kept, selector: i.selector }));

  const plain: ObiInstance = { instanceId: 'plain:1', serviceName: 'backend' };
  const staging: ObiInstance = { instanceId: 'staging:1', serviceName: 'backend', extra: { 'deployment.environment': 'staging' } };
  const shardInt: ObiInstance = { instanceId: 'shard-int:1', serviceName: 'backend' };
  const shardDouble: ObiInstance = { instanceId: 'shard-double:1', serviceName: 'backend' };
  const droppedAttrs: ObiInstance = { instanceId: 'dropped-attrs:1', serviceName: 'frontend' };

  before(async () => {
    [httpPort, adminPort] = await freePorts(2);
    service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: {
        'filter/obi': {
          trace_conditions: [
            'resource.attributes["deployment.environment"] == "staging"',
            'IsDouble(resource.attributes["shard"])',
            'resource.dropped_attributes_count > 0',
            'span.attributes["url.path"] == "/health"',
          ],
        },
      },
      exporters: { debug: { verbosity: 'basic' } },
      extensions: { admin: { endpoint: `127.0.0.1:${adminPort}`, token } },
      service: { extensions: ['admin'], pipelines: { traces: { receivers: ['otlp'], processors: ['filter/obi'], exporters: ['debug'] } }, telemetry: { metrics: { level: 'none' } } },
    });
    const resource = (instance: ObiInstance, more: Record<string, unknown> = {}) => ({
      ...obiResourceSpans(instance, [obiSpan()]),
      resource: { attributes: [...resourceAttributes(instance), ...((more.attributes as unknown[] | undefined) ?? [])], ...(more.dropped ? { droppedAttributesCount: more.dropped } : {}) },
    });
    const body = encodeTraces([
      resource(plain),
      resource(staging),
      resource(shardInt, { attributes: [{ key: 'shard', value: { intValue: 3 } }] }),
      resource(shardDouble, { attributes: [{ key: 'shard', value: { doubleValue: 3 } }] }),
      resource(droppedAttrs, { dropped: 2 }),
    ] as ReturnType<typeof obiResourceSpans>[]);
    const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
    assert.equal(res.status, 200);
  });

  after(async () => {
    await service?.shutdown();
  });

  test('the running lists preview what the processor decided on the data, resource conditions included', async () => {
    const decided = await current();
    assert.deepEqual(decided, [
      { id: 'dropped-attrs:1', kept: false, selector: 'OTTL condition' },
      { id: 'plain:1', kept: true, selector: null },
      { id: 'shard-double:1', kept: false, selector: 'OTTL condition' },
      { id: 'shard-int:1', kept: true, selector: null },
      { id: 'staging:1', kept: false, selector: 'OTTL condition' },
    ]);
    const preview = await decisions({ drop: [] });
    assert.deepEqual(preview.map(({ id, kept, selector }) => ({ id, kept, selector })), decided);
    // A resource-level preview cannot see spans: the kept ones say what may still go.
    assert.deepEqual(
      preview.map((d) => [d.id, d.note]),
      [
        ['dropped-attrs:1', undefined],
        ['plain:1', SPAN_NOTE],
        ['shard-double:1', undefined],
        ['shard-int:1', SPAN_NOTE],
        ['staging:1', undefined],
      ],
    );
  });

  test('proposed lists decide first; the conditions then drop from what they keep', async () => {
    assert.deepEqual(await decisions({ keep: [{ 'service.name': 'frontend' }, { 'service.instance.id': 'shard-*' }] }), [
      { id: 'dropped-attrs:1', kept: false, selector: 'OTTL condition' },
      { id: 'plain:1', kept: false, selector: null },
      { id: 'shard-double:1', kept: false, selector: 'OTTL condition' },
      { id: 'shard-int:1', kept: true, selector: 'service.instance.id="shard-*"', note: SPAN_NOTE },
      { id: 'staging:1', kept: false, selector: null },
    ]);
    assert.deepEqual(await decisions({ drop: [{ 'service.instance.id': 'staging:1' }] }).then((d) => d.find((i) => i.id === 'staging:1')), {
      id: 'staging:1', kept: false, selector: 'service.instance.id="staging:1"',
    });
  });
});
