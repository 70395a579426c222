import { compress as snappyBlock } from 'snappyjs';
import { snappyChecksum } from '../../src/util/compression';

// Compressed bodies for receiver tests, written without spansieve's own encoders (the checksum aside).

interface ZstdLibrary {
  compress(buf: Uint8Array, level?: number): Uint8Array;
}

/** One zstd frame with its content size, from the zstd library itself (loadZstd() must have run). */
export function zstdCompress(data: Uint8Array): Uint8Array {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('@bokuweb/zstd-wasm') as ZstdLibrary).compress(data, 3);
}

/**
 * A zstd frame without a content size (as a streaming encoder writes it) of `blocks` RLE blocks of
 * 128 KiB each: `blocks` x 128 KiB of 'A' from a few bytes per block.
 */
export function zstdWithoutContentSize(blocks: number): Buffer {
  const parts: Buffer[] = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58])];
  for (let i = 0; i < blocks; i++) {
    const header = (i === blocks - 1 ? 1 : 0) | (1 << 1) | ((128 * 1024) << 3);
    parts.push(Buffer.from([header & 0xff, (header >> 8) & 0xff, (header >> 16) & 0xff, 0x41]));
  }
  return Buffer.concat(parts);
}

/** The snappy framing format (gRPC's snappy, HTTP's x-snappy-framed): identifier, then compressed chunks of 64 KiB. */
export function snappyFramed(data: Uint8Array): Buffer {
  const parts: Buffer[] = [Buffer.from([0xff, 0x06, 0x00, 0x00, 0x73, 0x4e, 0x61, 0x50, 0x70, 0x59])];
  for (let at = 0; at < data.length || at === 0; at += 65536) {
    const chunk = data.subarray(at, at + 65536);
    const body = Buffer.from(snappyBlock(chunk));
    const header = Buffer.alloc(8);
    header.writeUIntLE(body.length + 4, 1, 3);
    header.writeUInt32LE(snappyChecksum(chunk), 4);
    parts.push(header, body);
    if (data.length === 0) break;
  }
  return Buffer.concat(parts);
}

/** `data` (at most 128 KiB) as one raw, last zstd block: with a frame header, a frame without compression. */
export function rawZstdBlock(data: Uint8Array): Buffer {
  const header = 1 | (data.length << 3);
  return Buffer.concat([Buffer.from([header & 0xff, (header >> 8) & 0xff, (header >> 16) & 0xff]), data]);
}
