// Micro-benchmark of the request compressions (src/util/compression.ts) on the benchmark's own OTLP
// requests: size, compress and decompress time per request, and how fast a bomb is refused.
// Prints JSON. Run: npx tsc -p tsconfig.json && node dist/bench/compression.js
import { compress, decompress, decompressSync, loadZstd, type Compression } from '../src/util/compression';
import { DEFAULT_POOL, buildPool } from './obi';

const LIMIT = 20 * 1024 * 1024;
const COMPRESSIONS: Compression[] = ['gzip', 'deflate', 'zstd', 'snappy', 'x-snappy-framed'];

function msSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** The time one refusal takes (the error is expected). */
function refusalMs(compression: Compression, data: Uint8Array): number {
  const start = process.hrtime.bigint();
  try {
    decompressSync(compression, data, LIMIT);
  } catch {
    return msSince(start);
  }
  throw new Error(`${compression}: the bomb was not refused`);
}

/** A zstd frame without a content size: `blocks` RLE blocks of 128 KiB, 4 bytes each. */
function zstdRleBomb(blocks: number): Buffer {
  const parts: Buffer[] = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58])];
  for (let i = 0; i < blocks; i++) {
    const header = (i === blocks - 1 ? 1 : 0) | (1 << 1) | ((128 * 1024) << 3);
    parts.push(Buffer.from([header & 0xff, (header >> 8) & 0xff, (header >> 16) & 0xff, 0x41]));
  }
  return Buffer.concat(parts);
}

async function main(): Promise<void> {
  await loadZstd();
  const requests = buildPool({ ...DEFAULT_POOL, requests: 32 }).requests.map((r) => r.body);
  const bytes = requests.reduce((n, r) => n + r.length, 0);
  const results: Record<string, unknown>[] = [];
  for (const compression of COMPRESSIONS) {
    const packed: Buffer[] = [];
    for (const r of requests) packed.push(await compress(compression, r));
    const rounds = 5;
    let start = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) for (const r of requests) await compress(compression, r);
    const compressMs = msSince(start) / (rounds * requests.length);
    start = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) for (const p of packed) await decompress(compression, p, LIMIT);
    const decompressMs = msSince(start) / (rounds * requests.length);
    const packedBytes = packed.reduce((n, p) => n + p.length, 0);
    results.push({
      compression,
      request_bytes: Math.round(bytes / requests.length),
      compressed_bytes: Math.round(packedBytes / requests.length),
      ratio: Number((packedBytes / bytes).toFixed(3)),
      compress_ms: Number(compressMs.toFixed(3)),
      decompress_ms: Number(decompressMs.toFixed(3)),
    });
  }
  const zeros = Buffer.alloc(200 * 1024 * 1024);
  const bombs: [string, Compression, Uint8Array][] = [
    ['zstd, no content size, 1.22 GiB from 40 KB', 'zstd', zstdRleBomb(10_000)],
    ['zstd, declares 1 TiB', 'zstd', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0, 0, 1, 0, 0, 0x01, 0, 0])],
    ['x-snappy-framed, 200 MiB of zeros', 'x-snappy-framed', await compress('x-snappy-framed', zeros)],
    ['snappy block, 64 MiB declared', 'snappy', await compress('snappy', zeros.subarray(0, 64 * 1024 * 1024))],
  ];
  const refusals = bombs.map(([name, compression, data]) => ({
    bomb: name,
    compressed_bytes: data.length,
    refused_ms: Number(Math.min(refusalMs(compression, data), refusalMs(compression, data), refusalMs(compression, data)).toFixed(2)),
  }));
  process.stdout.write(
    `${JSON.stringify({ limit_bytes: LIMIT, results, refusals }, null, 2)}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
