// The parts of the gRPC-over-HTTP/2 protocol shared by spansieve's client and server: status
// codes, the five-byte message prefix, and the percent-encoding of grpc-message.

/** gRPC status codes (the gRPC spec's list). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export const GRPC_STATUS_NAMES: Record<number, string> = Object.fromEntries(Object.entries(GrpcStatus).map(([name, code]) => [code, name]));

/** Length of the prefix before each message: compressed flag (1 byte) + length (4 bytes, big-endian). */
export const MESSAGE_PREFIX_LENGTH = 5;

function writePrefix(out: Buffer, compressed: boolean, length: number): void {
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(length, 1);
}

/** The prefix alone, for a message written after it (no copy of the message). */
export function messagePrefix(compressed: boolean, length: number): Buffer {
  const prefix = Buffer.allocUnsafe(MESSAGE_PREFIX_LENGTH);
  writePrefix(prefix, compressed, length);
  return prefix;
}

/** A message with its prefix in one buffer, for one write. */
export function framedMessage(compressed: boolean, message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(MESSAGE_PREFIX_LENGTH + message.length);
  writePrefix(frame, compressed, message.length);
  frame.set(message, MESSAGE_PREFIX_LENGTH);
  return frame;
}

/** grpc-message: printable ASCII except '%' as is, every other UTF-8 byte as %XX. */
export function encodeGrpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export function decodeGrpcMessage(value: string | string[] | undefined): string {
  const text = Array.isArray(value) ? value.join(',') : (value ?? '');
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
