import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseRequest } from '../../src/pdata/scan';
import { WantedAttributes, forEachSpan, resourceMessage, type SpanView } from '../../src/pdata/spans';
import { types } from '../../src/pdata/codec';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';

// The span reader the trace -> metrics connectors use: the few fields they need, straight from
// the received bytes.

function spansOf(body: Buffer, wanted?: WantedAttributes) {
  const out: Array<Record<string, unknown>> = [];
  for (const block of parseRequest('traces', body).batch.resources) {
    forEachSpan(
      block.bytes,
      (s: SpanView) =>
        out.push({
          traceId: s.traceIdHex(),
          spanId: s.spanIdHex(),
          parent: s.parentSpanIdHex(),
          name: s.name,
          kind: s.kindName,
          status: s.statusName,
          durationNs: s.durationNs,
          scope: s.scopeName,
          attributes: Object.fromEntries(s.attributes()),
        }),
      wanted,
    );
  }
  return out;
}

describe('span reader', () => {
  test('ids, name, kind, status, exact duration, scope', () => {
    const parent = obiSpan();
    const span = obiSpan({ parentSpanId: parent.spanId, name: 'GET /x', kind: 3, statusCode: 2, startNs: 1_700_000_000_123_456_789n, durationNs: 987_654_321n });
    const [read] = spansOf(encodeTraces([obiResourceSpans(hostInstance('h', 1), [span])]));
    assert.equal(read!.traceId, span.traceId.toString('hex'));
    assert.equal(read!.spanId, span.spanId.toString('hex'));
    assert.equal(read!.parent, parent.spanId.toString('hex'));
    assert.equal(read!.name, 'GET /x');
    assert.equal(read!.kind, 'SPAN_KIND_CLIENT');
    assert.equal(read!.status, 'STATUS_CODE_ERROR');
    assert.equal(read!.durationNs, 987_654_321);
    assert.equal(read!.scope, '');
  });

  test('an end before the start is a zero duration; a root span has no parent', () => {
    const span = { ...obiSpan(), endTimeUnixNano: '5', startTimeUnixNano: '10' };
    const [read] = spansOf(encodeTraces([obiResourceSpans(hostInstance('h', 1), [span])]));
    assert.equal(read!.durationNs, 0);
    assert.equal(read!.parent, '');
  });

  test('with wanted keys, only those attributes are read; first occurrence wins; types kept', () => {
    const span = obiSpan({
      attributes: [
        { key: 'http.response.status_code', value: { intValue: 503 } },
        { key: 'url.path', value: { stringValue: '/a' } },
        { key: 'http.response.status_code', value: { intValue: 200 } },
        { key: 'flag', value: { boolValue: true } },
      ],
    });
    const body = encodeTraces([obiResourceSpans(hostInstance('h', 1), [span])]);
    const [picked] = spansOf(body, new WantedAttributes(['http.response.status_code', 'flag', 'absent']));
    assert.deepEqual(picked!.attributes, { 'http.response.status_code': 503, flag: true });
    const [all] = spansOf(body);
    assert.deepEqual(Object.keys(all!.attributes as object), ['http.response.status_code', 'url.path', 'flag']);
  });

  test('a key-value whose value precedes its key is still read', () => {
    // KeyValue{value=2: AnyValue{string_value=1:"v"}, key=1:"k"}, hand-encoded (protobufjs always writes the key first),
    // appended to an encoded span as attributes (field 9), wrapped in ScopeSpans and ResourceSpans.
    const kv = Buffer.from([0x12, 0x03, 0x0a, 0x01, 0x76, 0x0a, 0x01, 0x6b]);
    const spanBytes = Buffer.from(types.ResourceSpans.encode(types.ResourceSpans.fromObject(obiResourceSpans(hostInstance('h', 1), [obiSpan({ attributes: [] })]))).finish());
    const decoded = types.ResourceSpans.decode(spanBytes) as unknown as { scopeSpans: Array<{ spans: Array<Record<string, unknown>> }> };
    const spanMessage = types.ResourceSpans.lookupType('Span');
    const encodedSpan = Buffer.concat([Buffer.from(spanMessage.encode(decoded.scopeSpans[0]!.spans[0]!).finish()), Buffer.from([0x4a, kv.length]), kv]);
    const scope = Buffer.concat([Buffer.from([0x12, encodedSpan.length]), encodedSpan]);
    const resourceSpans = Buffer.concat([Buffer.from([0x12, scope.length]), scope]);
    const values: unknown[] = [];
    forEachSpan(resourceSpans, (s) => values.push(s.attributes().get('k')), new WantedAttributes(['k']));
    assert.deepEqual(values, ['v']);
  });

  test('resourceMessage returns the encoded Resource', () => {
    const rs = obiResourceSpans(hostInstance('h', 1), [obiSpan()]);
    const bytes = types.ResourceSpans.encode(types.ResourceSpans.fromObject(rs)).finish();
    const resource = resourceMessage(bytes)!;
    const decoded = types.ResourceSpans.lookupType('opentelemetry.proto.resource.v1.Resource').decode(resource).toJSON() as { attributes: Array<{ key: string }> };
    assert.ok(decoded.attributes.some((a) => a.key === 'service.instance.id'));
  });
});
