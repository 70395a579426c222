import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import * as zlib from 'node:zlib';
import fc from 'fast-check';
import { compress as snappyjsCompress } from 'snappyjs';
import { zstdWithoutContentSize } from '../helpers/compression';
import { DecompressError, compress, decompressSync, loadZstd, snappyChecksum, type Compression } from '../../src/util/compression';

before(() => loadZstd());

const ALL: Compression[] = ['gzip', 'deflate', 'zstd', 'snappy', 'x-snappy-framed'];

function refused(fn: () => unknown, tooLarge: boolean, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof DecompressError, `a DecompressError, got ${String(err)}`);
    assert.equal(err.tooLarge, tooLarge, err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

test('every compression round-trips any data (property)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...ALL), fc.uint8Array({ maxLength: 200_000 }), async (compression, data) => {
      const packed = await compress(compression, data);
      assert.deepEqual(new Uint8Array(decompressSync(compression, packed, data.length)), data);
    }),
    { numRuns: 60 },
  );
});

test('compressible data of several chunks round-trips (snappy framing splits at 64 KiB)', async () => {
  const data = Buffer.from('span '.repeat(100_000));
  for (const compression of ALL) {
    const packed = await compress(compression, data);
    assert.ok(packed.length < data.length / 10, `${compression}: ${packed.length}`);
    assert.ok(decompressSync(compression, packed, data.length).equals(data), compression);
  }
  // `snappy` reads the framing format too, recognised by its stream identifier.
  assert.ok(decompressSync('snappy', await compress('x-snappy-framed', data), data.length).equals(data));
  // And the block format snappyjs writes (remote write's).
  assert.ok(decompressSync('snappy', snappyjsCompress(data), data.length).equals(data));
});

test('a body decompressing past the limit is refused as too large', async () => {
  const data = Buffer.alloc(1_000_000);
  for (const compression of ALL) {
    const packed = await compress(compression, data);
    refused(() => decompressSync(compression, packed, data.length - 1), true, /exceeds the limit of 999999 bytes/);
  }
});

test('zstd: a declared content size above the limit is refused before anything is allocated; an absent one is bounded by the limit', () => {
  // Single-segment frame declaring 2^32 bytes (8-byte size) with nothing behind: refused unread.
  const declared = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0, 1, 0, 0, 0, 0x01, 0, 0]);
  refused(() => decompressSync('zstd', declared, 1 << 20), true, /decompressed size 4294967296 exceeds/);
  // No declared size: 40 RLE blocks of 128 KiB (5 MiB from 160 bytes).
  const bomb = zstdWithoutContentSize(40);
  assert.equal(decompressSync('zstd', bomb, 8 << 20).length, 40 * 128 * 1024);
  refused(() => decompressSync('zstd', bomb, 1 << 20), true, /exceeds the limit of 1048576 bytes/);
  // Two frames: the second one's size counts too.
  // One raw block of 'hello', no content size.
  const raw = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x29, 0x00, 0x00, ...Buffer.from('hello')]);
  assert.equal(decompressSync('zstd', Buffer.concat([raw, raw]), 10).toString(), 'hellohello');
  refused(() => decompressSync('zstd', Buffer.concat([raw, raw]), 9), true, /exceeds the limit of 9 bytes/);
});

test('snappy: a declared length above the limit is refused before allocating', () => {
  // Block preamble declaring 0xffffffff bytes.
  refused(() => decompressSync('snappy', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]), 1 << 20), true, /decompressed size 4294967295 exceeds/);
});

test('corrupt or truncated data is refused as malformed, with what is wrong', async () => {
  const data = Buffer.from('the quick brown fox jumps over the lazy dog '.repeat(2000));
  for (const compression of ALL) {
    const packed = await compress(compression, data);
    const truncated = packed.subarray(0, packed.length - 7);
    refused(() => decompressSync(compression, truncated, 1 << 20), false, /./);
    refused(() => decompressSync(compression, Buffer.from('definitely not compressed'), 1 << 20), false, /./);
  }
  refused(() => decompressSync('zstd', Buffer.from('not zstd at all'), 100), false, /not a zstd frame/);
  refused(() => decompressSync('snappy', Buffer.alloc(0), 100), false, /invalid snappy block/);
  // A flipped byte inside a framed chunk: its checksum no longer matches.
  const framed = await compress('x-snappy-framed', data);
  framed[framed.length - 3] = framed[framed.length - 3]! ^ 0x20;
  refused(() => decompressSync('x-snappy-framed', framed, 1 << 20), false, /checksum mismatch|invalid snappy/);
  // A literal whose 4-byte length is negative as a signed number: snappyjs loops backwards on it.
  refused(() => decompressSync('snappy', Buffer.from([0x0a, 0xfc, 0x00, 0x00, 0x00, 0x80, 0x41]), 100), false, /literal runs past the input/);
  // A copy from before the start, and a declared length the elements do not fill.
  refused(() => decompressSync('snappy', Buffer.from([0x08, 0x05, 0x10]), 100), false, /copy from before the start/);
  refused(() => decompressSync('snappy', Buffer.from([0x08, 0x04, 0x41, 0x42]), 100), false, /2 bytes decoded, 8 declared/);
});

test('random bytes never throw anything but DecompressError (property)', () => {
  fc.assert(
    fc.property(fc.constantFrom(...ALL), fc.uint8Array({ maxLength: 300 }), (compression, data) => {
      try {
        decompressSync(compression, data, 1 << 16);
      } catch (err) {
        assert.ok(err instanceof DecompressError, `${compression}: ${String(err)}`);
      }
    }),
    { numRuns: 2000 },
  );
});

test('valid data with bytes changed or cut never throws anything but DecompressError (property)', async () => {
  const samples = await Promise.all(
    ALL.map(async (compression) => [compression, await compress(compression, Buffer.from('resource spans scope spans span '.repeat(300)))] as const),
  );
  fc.assert(
    fc.property(
      fc.constantFrom(...samples),
      fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 4 }),
      fc.nat(),
      ([compression, packed], changes, cut) => {
        const data = Buffer.from(packed);
        for (const { at, value } of changes) data[at % data.length] = value;
        try {
          decompressSync(compression, data.subarray(0, data.length - (cut % 3 === 0 ? cut % data.length : 0)), 1 << 16);
        } catch (err) {
          assert.ok(err instanceof DecompressError, `${compression}: ${String(err)}`);
        }
      },
    ),
    { numRuns: 3000 },
  );
});

test('the framing checksum is the masked CRC-32C', () => {
  // CRC-32C("123456789") = 0xe3069283, masked as the framing format specifies.
  const crc = 0xe3069283;
  assert.equal(snappyChecksum(Buffer.from('123456789')), ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0);
  // Longer inputs, at every alignment of the 8-byte loop: against a bit-at-a-time CRC-32C.
  const bitwise = (data: Uint8Array) => {
    let c = 0xffffffff;
    for (const byte of data) {
      c ^= byte;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    }
    const v = ~c >>> 0;
    return ((((v >>> 15) | (v << 17)) >>> 0) + 0xa282ead8) >>> 0;
  };
  const data = Buffer.from(Array.from({ length: 100 }, (_, i) => (i * 37 + 11) & 0xff));
  for (let n = 0; n <= data.length; n++) assert.equal(snappyChecksum(data.subarray(0, n)), bitwise(data.subarray(0, n)), `${n} bytes`);
});

test('gzip and deflate decompress what zlib writes, and zstd what the library writes at another level', async () => {
  const data = Buffer.from('x'.repeat(10_000));
  assert.ok(decompressSync('gzip', zlib.gzipSync(data), 10_000).equals(data));
  assert.ok(decompressSync('deflate', zlib.deflateSync(data), 10_000).equals(data));
  assert.ok(decompressSync('zstd', await compress('zstd', data, 19), 10_000).equals(data));
});
