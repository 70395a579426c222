import * as path from 'node:path';
import fc from 'fast-check';
import * as protobuf from 'protobufjs';
import type { Signal } from '../../src/pdata/batch';
import { JsonShapeError, PROTO_FILES, encodeFromOtlpJson, types } from '../../src/pdata/codec';
import { parseRequest } from '../../src/pdata/scan';
import { WireFormatError } from '../../src/pdata/wire';
import { HttpError, decompressBody } from '../../src/receivers/otlp/http-flow';
import { compressSync, loadZstd } from '../../src/util/compression';
import { deepAnyValue, deepTraceRequest } from '../helpers/deep';
import { hostInstance, obiResourceSpans, obiSpan, encodeTraces } from '../helpers/obi';
import { encodeMetrics, obiResourceMetrics } from '../helpers/obi-metrics';

// Fuzz targets (issue 14): each is an input generator (fast-check) and a check that throws when
// the input shows a bug. Run by test/fuzz/run.ts (`npm run fuzz`) for as long as asked, and by
// fuzz.test.ts with a fixed seed plus every input saved in corpus/ (inputs that once failed).
//
//   wire        parseRequest on bytes: returns or throws WireFormatError, never anything else, and
//               never accepts what protobufjs (the reference decoder) rejects.
//   json        the OTLP/JSON path: encodeFromOtlpJson returns or throws JsonShapeError; what it
//               returns is what protobufjs itself encodes, and parseRequest takes it or throws
//               WireFormatError.
//   decompress  the HTTP receiver's body decoding, one entry per Content-Encoding: returns at most
//               the limit or throws a 400 / 413 HttpError; a valid body comes back unchanged.

export interface FuzzTarget<T> {
  readonly name: string;
  readonly arbitrary: fc.Arbitrary<T>;
  /** Throws (or rejects) when the input shows a bug. */
  readonly check: (input: T) => void | Promise<void>;
  /** Awaited once before any input is generated or checked (zstd's WebAssembly). */
  readonly prepare?: () => Promise<void>;
  /** An input as a file in the corpus, and back. */
  readonly save: (input: T) => Buffer;
  readonly load: (file: Buffer) => T;
}

// --- the reference decoder: protobufjs on the same .proto files, without spansieve's changes to
// it, and with its nesting limit raised (spansieve takes deeper values than protobufjs' 100 levels).

protobuf.util.recursionLimit = 100_000;
protobuf.Reader.recursionLimit = 100_000;
let referenceRoot: protobuf.Root | undefined;
function reference(name: 'ExportTraceServiceRequest' | 'ExportMetricsServiceRequest'): protobuf.Type {
  if (!referenceRoot) {
    const dir = path.resolve(__dirname, '..', '..', '..', 'proto');
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(dir, target));
    root.loadSync(PROTO_FILES, { keepCase: false });
    root.resolveAll();
    referenceRoot = root;
  }
  return referenceRoot.lookupType(`opentelemetry.proto.collector.${name === 'ExportTraceServiceRequest' ? 'trace' : 'metrics'}.v1.${name}`);
}

// --- wire ------------------------------------------------------------------------------------

function varint(value: number): number[] {
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

/** Valid requests that mutations start from. */
const SEEDS: readonly { signal: Signal; bytes: Buffer }[] = [
  { signal: 'traces', bytes: encodeTraces([obiResourceSpans(hostInstance('fuzz', 1), [obiSpan()])]) },
  { signal: 'traces', bytes: deepTraceRequest('fuzz', deepAnyValue('kvlist', 3)) },
  { signal: 'traces', bytes: deepTraceRequest('fuzz', deepAnyValue('array', 3)) },
  {
    signal: 'metrics',
    bytes: encodeMetrics([
      obiResourceMetrics(hostInstance('fuzz', 2), { durations: [0.1, 2], cpuSeconds: 1, networkBytesDelta: 5, memoryBytes: 7, cpuUtilization: 0.5, rpcExponential: [1, 2] }),
    ]),
  },
];

interface WireInput {
  signal: Signal;
  bytes: Uint8Array;
}

/** A protobuf-shaped tree: fields with the numbers OTLP uses, any wire type, nested payloads. */
const protoTree: fc.Arbitrary<number[]> = fc.letrec<{ message: number[]; field: number[] }>((tie) => ({
  message: fc.array(tie('field'), { maxLength: 4 }).map((fields) => fields.flat()),
  field: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.tuple(fc.integer({ min: 1, max: 16 }), fc.constantFrom(0, 1, 5), fc.uint8Array({ minLength: 0, maxLength: 10 })).map(([field, wireType, raw]) => {
      const width = wireType === 1 ? 8 : wireType === 5 ? 4 : Math.max(1, Math.min(raw.length, 10));
      const body = Array.from({ length: width }, (_, i) => raw[i] ?? 0);
      if (wireType === 0) body.forEach((b, i) => (body[i] = i < width - 1 ? b | 0x80 : b & 0x7f));
      return [...varint(field * 8 + wireType), ...body];
    }),
    fc.tuple(fc.integer({ min: 1, max: 16 }), tie('message')).map(([field, payload]) => [...varint(field * 8 + 2), ...varint(payload.length), ...payload]),
    fc.tuple(fc.integer({ min: 1, max: 16 }), fc.uint8Array({ maxLength: 20 })).map(([field, payload]) => [...varint(field * 8 + 2), ...varint(payload.length), ...payload]),
  ),
})).message;

/** Byte edits applied to a seed: set, insert, delete, truncate. */
const edit = fc.tuple(fc.constantFrom('set', 'insert', 'delete', 'truncate'), fc.nat(), fc.integer({ min: 0, max: 255 }));

const wireInput: fc.Arbitrary<WireInput> = fc.oneof(
  fc.record({ signal: fc.constantFrom<Signal>('traces', 'metrics'), bytes: fc.uint8Array({ maxLength: 300 }) }),
  fc.record({ signal: fc.constantFrom<Signal>('traces', 'metrics'), bytes: protoTree.map((b) => Uint8Array.from(b)) }),
  fc.tuple(fc.constantFrom(...SEEDS), fc.array(edit, { minLength: 1, maxLength: 4 })).map(([seed, edits]) => {
    const bytes = [...seed.bytes];
    for (const [kind, at, value] of edits) {
      const i = bytes.length === 0 ? 0 : at % bytes.length;
      if (kind === 'set') bytes[i] = value;
      else if (kind === 'insert') bytes.splice(i, 0, value);
      else if (kind === 'delete') bytes.splice(i, 1 + (value % 8));
      else bytes.length = i;
    }
    return { signal: seed.signal, bytes: Uint8Array.from(bytes) };
  }),
);

export const wireTarget: FuzzTarget<WireInput> = {
  name: 'wire',
  arbitrary: wireInput,
  check({ signal, bytes }) {
    let accepted: boolean;
    try {
      parseRequest(signal, Buffer.from(bytes));
      accepted = true;
    } catch (err) {
      if (!(err instanceof WireFormatError)) throw new Error(`parseRequest threw ${String(err)}`, { cause: err });
      accepted = false;
    }
    if (!accepted) return;
    try {
      reference(signal === 'traces' ? 'ExportTraceServiceRequest' : 'ExportMetricsServiceRequest').decode(bytes);
    } catch (err) {
      throw new Error(`parseRequest accepted what protobufjs rejects: ${(err as Error).message}`, { cause: err });
    }
  },
  save: ({ signal, bytes }) => Buffer.concat([Buffer.from(`${signal}\n`), bytes]),
  load: (file) => {
    const newline = file.indexOf(10);
    return { signal: file.subarray(0, newline).toString() as Signal, bytes: file.subarray(newline + 1) };
  },
};

// --- json ------------------------------------------------------------------------------------

/** OTLP/JSON AnyValues, nested, with the scalar kinds and some ill-typed ones. */
const anyValueJson: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ stringValue: fc.oneof(fc.string(), fc.integer()) }),
    fc.record({ boolValue: fc.oneof(fc.boolean(), fc.constant('true')) }),
    fc.record({ intValue: fc.oneof(fc.integer().map(String), fc.integer(), fc.constant('x'), fc.constant('-9223372036854775808')) }),
    fc.record({ doubleValue: fc.oneof(fc.double(), fc.constantFrom('NaN', 'Infinity', '1.5')) }),
    fc.record({ bytesValue: fc.oneof(fc.base64String(), fc.constant('!!')) }),
    fc.record({ arrayValue: fc.record({ values: fc.array(tie('value'), { maxLength: 3 }) }) }),
    fc.record({ kvlistValue: fc.record({ values: fc.array(fc.record({ key: fc.string(), value: tie('value') }, { requiredKeys: ['key'] }), { maxLength: 3 }) }) }),
    fc.record({ stringValue: fc.string(), arrayValue: fc.record({ values: fc.array(tie('value'), { maxLength: 2 }) }), bytesValue: fc.constant('AAE=') }),
    fc.constantFrom(null, 5, 'text', [], { arrayValue: 5 }, { arrayValue: { values: 5 } }, { kvlistValue: { values: [7] } }, { kvlistValue: { values: [{ key: 'a', value: 'b' }] } }),
  ),
})).value;

/** A value nested `depth` levels, for the path past protobufjs' own recursion. */
const deepJson = fc.tuple(fc.integer({ min: 10, max: 120 }), fc.constantFrom('arrayValue', 'kvlistValue'), anyValueJson).map(([depth, kind, leaf]) => {
  let value: unknown = leaf;
  for (let i = 0; i < depth; i++) value = kind === 'arrayValue' ? { arrayValue: { values: [value] } } : { kvlistValue: { values: [{ key: `k${i}`, value }] } };
  return value;
});

const jsonInput: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue(),
  fc
    .array(fc.oneof(anyValueJson, deepJson), { maxLength: 3 })
    .map((values) => ({ resourceSpans: [{ resource: { attributes: values.map((value, i) => ({ key: `a${i}`, value })) }, scopeSpans: [{ spans: [{ name: 's', attributes: [{ key: 'x', value: values[0] ?? null }] }] }] }] })),
);

export const jsonTarget: FuzzTarget<unknown> = {
  name: 'json',
  arbitrary: jsonInput,
  check(json) {
    let bytes: Uint8Array | undefined;
    try {
      bytes = encodeFromOtlpJson(types.ExportTraceServiceRequest, json);
    } catch (err) {
      if (!(err instanceof JsonShapeError)) throw new Error(`encodeFromOtlpJson threw ${String(err)}`, { cause: err });
    }
    let expected: Uint8Array | undefined;
    const type = reference('ExportTraceServiceRequest');
    if (json !== null && typeof json === 'object' && !Array.isArray(json)) {
      try {
        expected = type.encode(type.fromObject(json)).finish();
      } catch {
        expected = undefined;
      }
    }
    if ((bytes === undefined) !== (expected === undefined)) throw new Error(`encodeFromOtlpJson ${bytes ? 'accepted' : 'refused'} what protobufjs ${expected ? 'accepts' : 'refuses'}`);
    if (bytes === undefined || expected === undefined) return;
    if (!Buffer.from(bytes).equals(Buffer.from(expected))) throw new Error('encodeFromOtlpJson wrote other bytes than protobufjs');
    try {
      parseRequest('traces', Buffer.from(bytes));
    } catch (err) {
      if (!(err instanceof WireFormatError)) throw new Error(`parseRequest threw ${String(err)}`, { cause: err });
    }
  },
  save: (json) => Buffer.from(JSON.stringify(json)),
  load: (file) => JSON.parse(file.toString('utf8')) as unknown,
};

// --- decompress ------------------------------------------------------------------------------

/** The receivers' decompressors, by Content-Encoding; a new codec is one line here. */
export const DECOMPRESSORS: readonly { encoding: string; compress: (data: Buffer) => Buffer }[] = [
  { encoding: 'gzip', compress: (data) => compressSync('gzip', data) },
  { encoding: 'deflate', compress: (data) => compressSync('deflate', data) },
  { encoding: 'zlib', compress: (data) => compressSync('deflate', data) },
  { encoding: 'zstd', compress: (data) => compressSync('zstd', data) },
  { encoding: 'snappy', compress: (data) => compressSync('snappy', data) },
  { encoding: 'x-snappy-framed', compress: (data) => compressSync('x-snappy-framed', data) },
];

/** The body size limit the decompress target runs under: small, so bombs are cheap to find. */
const LIMIT = 64 * 1024;

interface DecompressInput {
  encoding: string;
  /** Compressed valid data when `original` is set (then it must come back), else anything. */
  body: Uint8Array;
  original: Uint8Array | undefined;
}

const decompressInput: fc.Arbitrary<DecompressInput> = fc.constantFrom(...DECOMPRESSORS).chain(({ encoding, compress }) =>
  fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((body) => ({ encoding, body, original: undefined })),
    fc.uint8Array({ maxLength: 300 }).map((data) => ({ encoding, body: compress(Buffer.from(data)), original: data })),
    // A bomb: a highly compressible body larger than the limit.
    fc.integer({ min: LIMIT - 2, max: 4 * LIMIT }).map((size) => ({ encoding, body: compress(Buffer.alloc(size)), original: Buffer.alloc(size) })),
    fc.tuple(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([data, at, value]) => {
      const body = Buffer.from(compress(Buffer.from(data)));
      body[at % body.length] = value;
      return { encoding, body, original: undefined };
    }),
    fc.tuple(fc.uint8Array({ maxLength: 300 }), fc.nat()).map(([data, at]) => {
      const body = compress(Buffer.from(data));
      return { encoding, body: body.subarray(0, at % body.length), original: undefined };
    }),
  ),
);

export const decompressTarget: FuzzTarget<DecompressInput> = {
  name: 'decompress',
  arbitrary: decompressInput,
  prepare: loadZstd,
  async check({ encoding, body, original }) {
    let out: Buffer;
    try {
      out = await decompressBody(Buffer.from(body), encoding, LIMIT);
    } catch (err) {
      if (!(err instanceof HttpError)) throw new Error(`decompress threw ${String(err)}`, { cause: err });
      if (err.status !== 400 && err.status !== 413) throw new Error(`decompress answered ${err.status}: ${err.message}`, { cause: err });
      if (original !== undefined && original.length <= LIMIT) throw new Error(`decompress refused a valid body: ${err.message}`, { cause: err });
      return;
    }
    if (out.length > LIMIT) throw new Error(`decompress returned ${out.length} bytes, over the limit`);
    if (original !== undefined && !out.equals(Buffer.from(original))) throw new Error('decompress returned other bytes than were compressed');
  },
  save: ({ encoding, body, original }) => Buffer.from(JSON.stringify({ encoding, body: Buffer.from(body).toString('base64'), original: original && Buffer.from(original).toString('base64') })),
  load: (file) => {
    const { encoding, body, original } = JSON.parse(file.toString('utf8')) as { encoding: string; body: string; original?: string };
    return { encoding, body: Buffer.from(body, 'base64'), original: original === undefined ? undefined : Buffer.from(original, 'base64') };
  },
};

export const TARGETS: readonly FuzzTarget<never>[] = [wireTarget, jsonTarget, decompressTarget] as unknown as FuzzTarget<never>[];
