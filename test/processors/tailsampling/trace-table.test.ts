import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import fc from 'fast-check';
import { TraceTable } from '../../../src/processors/tailsampling/trace-table';
import { traceKey } from '../../../src/processors/tailsampling/trace-data';

// The processor's id table against a Map, through random inserts, updates and deletes, by bytes
// and by string key; few distinct ids so that probe runs collide, wrap and shift back on delete.

const op = fc.oneof(
  fc.record({ kind: fc.constant('put' as const), id: fc.integer({ min: 0, max: 3000 }), value: fc.integer() }),
  fc.record({ kind: fc.constant('delete' as const), id: fc.integer({ min: 0, max: 3000 }) }),
);

/** Ids that differ in one byte only, or are sequential, as tests and some SDKs make them. */
function idBytes(n: number): Buffer {
  const b = Buffer.alloc(20, 0xaa);
  // At an offset, to read ids out of a larger buffer as the processor does.
  b.writeUInt32BE(n, 2 + 12);
  return b;
}

test('TraceTable behaves as a Map through inserts, updates and deletes (sequential ids, growth, wrap-around)', () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 4000 }), (ops) => {
      // Presized (as the processor makes it from num_traces) or grown from the smallest.
      const table = new TraceTable<number>(ops.length % 2 === 0 ? 0 : 3000);
      const model = new Map<string, number>();
      for (const o of ops) {
        const bytes = idBytes(o.id);
        const key = traceKey(bytes, 2, 16);
        const slot = o.id % 2 === 0 ? table.find(bytes, 2) : table.findKey(key);
        assert.equal(slot >= 0, model.has(key));
        if (o.kind === 'put') {
          if (slot >= 0) table.set(slot, o.value);
          else if (o.id % 3 === 0) table.insertKey(key, o.value);
          else table.insert(bytes, 2, o.value);
          model.set(key, o.value);
        } else if (slot >= 0) {
          table.delete(slot);
          model.delete(key);
        }
        assert.equal(table.size, model.size);
      }
      for (const [key, value] of model) {
        const slot = table.findKey(key);
        assert.ok(slot >= 0);
        assert.equal(table.get(slot), value);
      }
      const seen: number[] = [];
      table.forEach((v) => seen.push(v));
      assert.deepEqual(seen.sort(), [...model.values()].sort());
    }),
    { numRuns: 60 },
  );
});

test('TraceTable: deleting inside a long probe run keeps every other id findable', () => {
  const table = new TraceTable<number>();
  const ids = Array.from({ length: 5000 }, (_, i) => idBytes(i * 7919));
  ids.forEach((b, i) => table.insert(b, 2, i));
  for (let i = 0; i < ids.length; i += 3) table.delete(table.find(ids[i]!, 2));
  ids.forEach((b, i) => {
    const slot = table.find(b, 2);
    if (i % 3 === 0) assert.equal(slot, -1, `id ${i} deleted`);
    else assert.equal(table.get(slot), i, `id ${i}`);
  });
});
