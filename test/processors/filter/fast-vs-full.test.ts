import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AttrValue } from '../../../src/pdata/attributes';
import { Batch } from '../../../src/pdata/batch';
import { types } from '../../../src/pdata/codec';
import { parseRequest } from '../../../src/pdata/scan';
import { encodeRepeatedField } from '../../../src/pdata/wire';
import { ConfigIssues, Node } from '../../../src/config/reader';
import { decide, parseFilterConfig, type FilterConfig } from '../../../src/processors/filter/filter';
import { dockerInstance, encodeTraces, hostInstance, k8sInstance, obiResourceSpans, obiSpan, type ObiInstance } from '../../helpers/obi';

// The fast path (decide from the wire, forward kept bytes) against a full-decode path (protobufjs
// decodes everything, the same rules decide on the decoded attributes, protobufjs re-encodes what
// is kept): the decisions and the output must be the same.

type PlainAnyValue = {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  doubleValue?: number;
  bytesValue?: Uint8Array;
  arrayValue?: { values?: PlainAnyValue[] };
  kvlistValue?: { values?: { key: string; value?: PlainAnyValue }[] };
};

function toAttrValue(value: PlainAnyValue | undefined): AttrValue {
  if (!value) return null;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== undefined) {
    const big = BigInt(value.intValue);
    return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  }
  if (value.doubleValue !== undefined) return value.doubleValue;
  if (value.bytesValue !== undefined) return value.bytesValue;
  if (value.arrayValue) return (value.arrayValue.values ?? []).map(toAttrValue);
  if (value.kvlistValue) return Object.fromEntries((value.kvlistValue.values ?? []).map((kv) => [kv.key, toAttrValue(kv.value)]));
  return null;
}

/** The full-decode path: every field decoded, decisions on decoded attributes, kept re-encoded. */
function fullPath(config: FilterConfig, body: Uint8Array): { decisions: boolean[]; output: Uint8Array } {
  const request = types.ExportTraceServiceRequest.toObject(types.ExportTraceServiceRequest.decode(body), { longs: String }) as {
    resourceSpans?: { resource?: { attributes?: { key: string; value?: PlainAnyValue }[] } }[];
  };
  const decisions: boolean[] = [];
  const kept = (request.resourceSpans ?? []).filter((rs) => {
    const attributes = new Map<string, AttrValue>();
    for (const kv of rs.resource?.attributes ?? []) if (!attributes.has(kv.key)) attributes.set(kv.key, toAttrValue(kv.value));
    const { kept: keep } = decide(config, attributes);
    decisions.push(keep);
    return keep;
  });
  const type = types.ExportTraceServiceRequest;
  return { decisions, output: type.encode(type.fromObject({ resourceSpans: kept })).finish() };
}

function fastPath(config: FilterConfig, body: Uint8Array): { decisions: boolean[]; output: Uint8Array } {
  // As the receiver parses: resources the filter drops are counted, not checked.
  const { batch } = parseRequest('traces', body, (attributes) => decide(config, attributes).kept);
  const decisions = batch.resources.map((block) => decide(config, block.attributes).kept);
  return { decisions, output: new Batch('traces', batch.resources.filter((_b, i) => decisions[i])).toRequestBytes() };
}

function filterConfig(raw: Record<string, unknown>): FilterConfig {
  const issues = new ConfigIssues();
  const config = parseFilterConfig(new Node(raw, 'processors::filter', issues));
  assert.deepEqual(issues.errors, []);
  return config;
}

const CONFIGS: Record<string, Record<string, unknown>> = {
  'exact ids': { keep: [{ 'service.instance.id': 'web-1:4242' }, { 'service.instance.id': 'shop.edge-1.envoy' }] },
  'pid, glob and regex': { keep: [{ pid: 4243 }, { 'service.instance.id': 'edge-*:*' }, { 'k8s.namespace.name': '/^sh.p$/' }] },
  'multi-key and drop': { keep: [{ 'service.name': 'backend', 'host.name': 'web-?' }], drop: [{ 'service.instance.id': 'web-2:4242' }] },
  'drop only': { drop: [{ 'container.name': 'db-*' }, { 'http.request.method': 'GET' }] },
};

function corpus(): { name: string; body: Uint8Array }[] {
  const instances: ObiInstance[] = [
    hostInstance('web-1', 4242),
    hostInstance('web-1', 4243),
    hostInstance('web-2', 4242),
    hostInstance('edge-3', 77, 'envoy'),
    k8sInstance('shop', 'edge-1', 'envoy'),
    k8sInstance('kube-system', 'coredns-1', 'coredns'),
    dockerInstance('db', 'db-1'),
    dockerInstance('proxy', 'proxy-1'),
  ];
  const out: { name: string; body: Uint8Array }[] = [
    { name: 'OBI-shaped, every instance form', body: encodeTraces(instances.map((i) => obiResourceSpans(i, [obiSpan(), obiSpan({ kind: 3 })]))) },
    { name: 'one instance, many spans', body: encodeTraces([obiResourceSpans(instances[0]!, Array.from({ length: 50 }, () => obiSpan()))]) },
    { name: 'empty resources and a resource without attributes', body: encodeTraces([obiResourceSpans(instances[1]!, []), { resource: { attributes: [] }, scopeSpans: [] }]) },
  ];
  // Attribute values of every type, including ones that only look like a kept id.
  const typed = [
    { key: 'service.instance.id', value: { intValue: 4242 } },
    { key: 'host.name', value: { boolValue: true } },
    { key: 'service.name', value: { arrayValue: { values: [{ stringValue: 'backend' }] } } },
  ];
  out.push({ name: 'non-string attribute values', body: encodeTraces([{ resource: { attributes: typed }, scopeSpans: [{ scope: {}, spans: [obiSpan()] }] }] as never) });
  return out;
}

describe('fast path vs full-decode path', () => {
  for (const [configName, raw] of Object.entries(CONFIGS)) {
    test(`same decisions and same output: ${configName}`, () => {
      const config = filterConfig(raw);
      let keptSomewhere = false;
      let droppedSomewhere = false;
      for (const { name, body } of corpus()) {
        const fast = fastPath(config, body);
        const full = fullPath(config, body);
        assert.deepEqual(fast.decisions, full.decisions, `${configName} / ${name}: decisions`);
        // protobufjs writes the canonical encoding, which is what these inputs are: byte-identical.
        assert.deepEqual(Buffer.from(fast.output), Buffer.from(full.output), `${configName} / ${name}: output bytes`);
        keptSomewhere ||= fast.decisions.includes(true);
        droppedSomewhere ||= fast.decisions.includes(false);
      }
      assert.ok(keptSomewhere && droppedSomewhere, `${configName} keeps some resources and drops others`);
    });
  }

  test('with unknown fields the decisions agree, and only the fast path keeps the unknown bytes', () => {
    const config = filterConfig(CONFIGS['exact ids']!);
    const known = types.ResourceSpans.encode(types.ResourceSpans.fromObject(obiResourceSpans(hostInstance('web-1', 4242), [obiSpan()]))).finish();
    // Field 99 (varint) appended inside the ResourceSpans: a future OTLP field.
    const withUnknown = Buffer.concat([known, Buffer.from([0x98, 0x06, 0x01])]);
    const body = encodeRepeatedField(1, [withUnknown]);
    const fast = fastPath(config, body);
    const full = fullPath(config, body);
    assert.deepEqual(fast.decisions, [true]);
    assert.deepEqual(full.decisions, [true]);
    assert.deepEqual(Buffer.from(fast.output), body, 'the fast path forwards the resource as it arrived');
    assert.notDeepEqual(Buffer.from(full.output), body, 'a decode/re-encode loses the unknown field');
  });
});
