import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DECODE_RECURSION_LIMIT, TooDeepError, encodeFromOtlpJson, toOtlpJson, types } from '../../src/pdata/codec';
import { parseRequest } from '../../src/pdata/scan';
import { MAX_NESTING_DEPTH } from '../../src/pdata/schema';
import { WireFormatError } from '../../src/pdata/wire';
import { deepAnyValue, deepAnyValueJson, deepTraceRequest, deepTraceRequestJson } from '../helpers/deep';

// Attribute values nested deep, below the receivers: the wire scanner, the JSON conversion and
// full decoding (debug, otlphttp JSON, prometheus).

test('the scanner takes values nested up to the limit and refuses one level more with a short path', () => {
  for (const kind of ['kvlist', 'array'] as const) {
    assert.equal(parseRequest('traces', deepTraceRequest('i', deepAnyValue(kind, MAX_NESTING_DEPTH))).batch.itemCount, 1);
    assert.throws(
      () => parseRequest('traces', deepTraceRequest('i', deepAnyValue(kind, MAX_NESTING_DEPTH + 1))),
      (err: unknown) => err instanceof WireFormatError && err.message.length < 300 && err.message.includes(`nested more than ${MAX_NESTING_DEPTH} levels deep`),
    );
  }
});

test('OTLP/JSON converts to the same bytes as protobuf at every depth, past protobufjs recursion too', () => {
  for (const kind of ['kvlist', 'array'] as const) {
    for (const depth of [0, 1, 14, 15, 16, 22, 23, 24, 60, 2000]) {
      const json = JSON.parse(deepTraceRequestJson('i', deepAnyValueJson(kind, depth))) as unknown;
      assert.ok(Buffer.from(encodeFromOtlpJson(types.ExportTraceServiceRequest, json)).equals(deepTraceRequest('i', deepAnyValue(kind, depth))), `${kind} ${depth}`);
    }
  }
});

test(`full decoding goes ${DECODE_RECURSION_LIMIT} message levels deep, then fails with TooDeepError`, () => {
  const shallow = toOtlpJson(types.ExportTraceServiceRequest, deepTraceRequest('i', deepAnyValue('kvlist', 300)));
  assert.ok(shallow.includes('"stringValue":"x"'));
  assert.throws(() => toOtlpJson(types.ExportTraceServiceRequest, deepTraceRequest('i', deepAnyValue('kvlist', 10_000))), TooDeepError);
});
