import { FRAME_HEADER_BYTES } from './frames';

// Cuts a byte stream into HTTP/2 frames (RFC 9113 4.1), copying only where a frame straddles
// reads. Both ends use it (the server reads the client preface before handing reads over).

/** A frame longer than the SETTINGS_MAX_FRAME_SIZE we advertised (a connection FRAME_SIZE_ERROR). */
export class FrameSizeError extends Error {}

export type FrameHandler = (type: number, flags: number, streamId: number, payload: Buffer) => void;

export class FrameReader {
  private inbox: Buffer[] = [];
  private inboxBytes = 0;
  private needed = FRAME_HEADER_BYTES;
  /** Set by the handler to stop reading (the connection ended). */
  stopped = false;

  constructor(private readonly onFrame: FrameHandler, private readonly maxFrameSize: number) {}

  /** Feeds one read; frames are handed over as they complete. Throws FrameSizeError. */
  push(chunk: Buffer): void {
    if (this.stopped) return;
    let rest = chunk;
    if (this.inboxBytes > 0) {
      this.inbox.push(chunk);
      this.inboxBytes += chunk.length;
      if (this.inboxBytes < this.needed) return;
      if (this.needed === FRAME_HEADER_BYTES) {
        const head = this.inbox.length === 1 ? this.inbox[0]! : Buffer.concat(this.inbox, FRAME_HEADER_BYTES);
        this.needed = FRAME_HEADER_BYTES + this.frameLength(head, 0);
        if (this.inboxBytes < this.needed) return;
      }
      // Everything before this chunk is less than `needed`, so the frame ends inside it.
      const take = this.needed - (this.inboxBytes - chunk.length);
      this.inbox[this.inbox.length - 1] = chunk.subarray(0, take);
      const first = this.inbox.length === 1 ? this.inbox[0]! : Buffer.concat(this.inbox, this.needed);
      this.inbox = [];
      this.inboxBytes = 0;
      rest = chunk.subarray(take);
      if (this.parse(first) < first.length || this.stopped) return;
    }
    const p = this.parse(rest);
    if (p < rest.length && !this.stopped) {
      this.inbox.push(rest.subarray(p));
      this.inboxBytes = rest.length - p;
    }
  }

  private frameLength(buf: Buffer, p: number): number {
    const length = (buf[p]! << 16) | (buf[p + 1]! << 8) | buf[p + 2]!;
    if (length > this.maxFrameSize) throw new FrameSizeError('frame larger than SETTINGS_MAX_FRAME_SIZE');
    return length;
  }

  /** Hands over whole frames from `buf`; returns how far it got and sets `needed` for the rest. */
  private parse(buf: Buffer): number {
    let p = 0;
    this.needed = FRAME_HEADER_BYTES;
    while (buf.length - p >= FRAME_HEADER_BYTES) {
      const length = this.frameLength(buf, p);
      if (buf.length - p - FRAME_HEADER_BYTES < length) {
        this.needed = FRAME_HEADER_BYTES + length;
        return p;
      }
      const type = buf[p + 3]!;
      const flags = buf[p + 4]!;
      const streamId = buf.readUInt32BE(p + 5) & 0x7fffffff;
      const payload = buf.subarray(p + FRAME_HEADER_BYTES, p + FRAME_HEADER_BYTES + length);
      p += FRAME_HEADER_BYTES + length;
      this.onFrame(type, flags, streamId, payload);
      if (this.stopped) return p;
    }
    return p;
  }
}
