import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseRequest } from '../../src/pdata/scan';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan } from '../helpers/obi';

/** Whether `view`'s bytes lie inside `container`'s (the same memory, not equal contents). */
function within(view: Uint8Array, container: Uint8Array): boolean {
  return view.buffer === container.buffer && view.byteOffset >= container.byteOffset && view.byteOffset + view.byteLength <= container.byteOffset + container.byteLength;
}

void describe('Batch.compact', () => {
  // Three resources, the middle one with a 200-byte span name so its length varint takes 2 bytes.
  const request = encodeTraces([
    obiResourceSpans(hostInstance('h', 1), [obiSpan()]),
    obiResourceSpans(hostInstance('h', 2), [obiSpan({ name: 'x'.repeat(200) }), obiSpan()]),
    obiResourceSpans(hostInstance('h', 3), [obiSpan()]),
  ]);

  void test('same blocks, same request bytes, but in a buffer of its own', () => {
    const received = parseRequest('traces', request).batch;
    const kept = received.withResources([received.resources[1]!, received.resources[2]!]);
    const compacted = kept.compact();
    assert.deepEqual(compacted.toRequestBytes(), kept.toRequestBytes());
    assert.equal(compacted.itemCount, 3);
    compacted.resources.forEach((block, i) => {
      const original = kept.resources[i]!;
      assert.deepEqual(Buffer.from(block.bytes), Buffer.from(original.bytes));
      assert.equal(block.attributes, original.attributes);
      assert.equal(block.itemCount, original.itemCount);
      assert.ok(!within(block.bytes, received.resources[1]!.bytes) && !within(block.bytes, received.resources[2]!.bytes), 'not a view into the received request');
      assert.ok(within(block.bytes, compacted.toRequestBytes()), 'a view into its own request bytes');
    });
    assert.equal(compacted.compact(), compacted, 'compacting twice copies nothing');
  });

  void test('the received request can change afterwards without touching the compacted batch', () => {
    const copy = Buffer.from(request);
    const received = parseRequest('traces', copy).batch;
    const compacted = received.compact();
    const before = Buffer.from(compacted.toRequestBytes());
    copy.fill(0);
    assert.deepEqual(compacted.toRequestBytes(), before);
    assert.deepEqual(compacted.toRequestBytes(), request);
  });
});
