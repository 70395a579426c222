import type * as grpc from '@grpc/grpc-js';
import type { Signal } from '../../src/pdata/batch';
import { EXPORT_METHOD } from '../../src/pdata/otlp';

const passThrough = (value: Buffer): Buffer => value;

/** A grpc-js unary method whose messages stay raw bytes: tests send and read exact wire bytes. */
export function rawExportMethod(signal: Signal): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path: EXPORT_METHOD[signal],
    requestStream: false,
    responseStream: false,
    requestSerialize: passThrough,
    requestDeserialize: passThrough,
    responseSerialize: passThrough,
    responseDeserialize: passThrough,
  };
}
