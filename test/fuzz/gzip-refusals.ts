// Run by fuzz.test.ts in a process of its own: refuses `rounds` × `count` invalid gzip bodies after
// a warm-up round and prints the largest growth of external memory and RSS. No forced collection:
// what matters is what a client sending bad bodies makes the process hold, and zlib's *Sync forms
// leave ~16 KB per failure to V8's collector, which does not count it as pressure.
import * as zlib from 'node:zlib';
import { decompressBody } from '../../src/receivers/otlp/http-flow';

async function main(count: number, rounds: number): Promise<void> {
  const bad = Buffer.from(zlib.gzipSync(Buffer.from('hello world')));
  bad[12]! ^= 0xff;
  const refuse = async () => {
    for (let i = 0; i < count; i++) await decompressBody(bad, 'gzip', 1024).catch(() => undefined);
  };
  await refuse();
  const before = process.memoryUsage();
  let externalMb = 0;
  let rssMb = 0;
  for (let round = 0; round < rounds; round++) {
    await refuse();
    const now = process.memoryUsage();
    externalMb = Math.max(externalMb, (now.external - before.external) / 2 ** 20);
    rssMb = Math.max(rssMb, (now.rss - before.rss) / 2 ** 20);
  }
  process.stdout.write(`${JSON.stringify({ externalMb, rssMb })}\n`);
}

void main(Number(process.argv[2]), Number(process.argv[3]));
