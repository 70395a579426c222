import type * as net from 'node:net';
import {
  DEFAULT_WINDOW, FRAME_HEADER_BYTES, Flag, FrameType, H2Error, MAX_MAX_FRAME_SIZE, MAX_WINDOW, MIN_MAX_FRAME_SIZE, PREFACE, Setting,
  windowUpdateFrame, writeFrameHeader,
} from './frames';
import { FrameReader, FrameSizeError } from './frame-reader';
import { HpackError } from './hpack';

// What the server (connection.ts) and the client (client.ts) of one HTTP/2 connection do alike:
// reading frames, the peer's SETTINGS, both flow-control windows (RFC 9113 6.9), PING replies and
// the bound on replies queued to a peer that does not read. Each end adds its streams' rules.

/** A connection error (5.4.1): answered with GOAWAY and this code. */
export class ConnectionError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** What the shared code keeps of a stream. */
export interface FlowStream {
  readonly id: number;
  sendWindow: number;
  recvWindow: number;
  recvUnacked: number;
}

export interface EndpointLimits {
  /** Our SETTINGS_INITIAL_WINDOW_SIZE (each stream's receive window). */
  readonly initialWindowSize: number;
  /** The connection's receive window (at least 65,535). */
  readonly connectionWindowSize: number;
  /** Our SETTINGS_MAX_FRAME_SIZE: a larger frame is a FRAME_SIZE_ERROR. */
  readonly maxFrameSize: number;
  /** SETTINGS entries in one frame; more is ENHANCE_YOUR_CALM. */
  readonly maxSettings: number;
  /** Octets queued to a peer that does not read, past which a PING or SETTINGS ack ends the connection. */
  readonly maxOutboundBytes: number;
  /** CONTINUATION frames one header block may have; more is ENHANCE_YOUR_CALM. */
  readonly maxContinuations: number;
  /** Octets one header block may have (all its frames); more is ENHANCE_YOUR_CALM. */
  readonly maxHeaderBlockBytes: number;
}

/** A header block's flag of our own: the HEADERS gave the stream itself as its dependency (5.3.1). */
export const SELF_DEPENDENT = 0x100;

const EMPTY = Buffer.alloc(0);

const SETTINGS_ACK = (() => {
  const out = Buffer.alloc(FRAME_HEADER_BYTES);
  writeFrameHeader(out, 0, 0, FrameType.SETTINGS, Flag.ACK, 0);
  return out;
})();

export abstract class H2Endpoint<S extends FlowStream> {
  protected abstract readonly socket: net.Socket;
  protected readonly initialWindowSize: number;
  protected readonly connectionWindowSize: number;
  protected readonly maxFrameSize: number;
  private readonly maxSettings: number;
  private readonly maxOutboundBytes: number;
  private readonly maxContinuations: number;
  private readonly maxHeaderBlockBytes: number;
  protected readonly reader: FrameReader;
  protected readonly streams = new Map<number, S>();
  /** Streams whose body waits for a send window. */
  protected readonly blocked = new Set<S>();
  /** The client preface's octets so far (server side); undefined once read, or on the client. */
  protected prefaceRead: Buffer | undefined;
  // The peer's settings (what we send).
  protected peerMaxConcurrent = Number.POSITIVE_INFINITY;
  protected peerInitialWindow = DEFAULT_WINDOW;
  protected peerMaxFrameSize = MIN_MAX_FRAME_SIZE;
  protected sendWindow = DEFAULT_WINDOW;
  protected recvWindow: number;
  protected recvUnacked = 0;
  protected dead = false;
  // A header block spread over CONTINUATION frames.
  protected block: { streamId: number; flags: number; fragments: Buffer[]; bytes: number; continuations: number } | undefined;
  /** A PING from the peer, before its ACK is queued (a keepalive policy may end the connection). */
  onPingReceived: (() => void) | undefined = undefined;

  /** The peer's first frame, SETTINGS, is in. */
  private settingsSeen = false;

  /** `peer`: who is on the other end ('client': its preface is read first). */
  constructor(limits: EndpointLimits, private readonly peer: 'client' | 'server') {
    this.initialWindowSize = limits.initialWindowSize;
    this.connectionWindowSize = limits.connectionWindowSize;
    this.maxFrameSize = limits.maxFrameSize;
    this.maxSettings = limits.maxSettings;
    this.maxOutboundBytes = limits.maxOutboundBytes;
    this.maxContinuations = limits.maxContinuations;
    this.maxHeaderBlockBytes = limits.maxHeaderBlockBytes;
    this.recvWindow = this.connectionWindowSize;
    this.prefaceRead = peer === 'client' ? EMPTY : undefined;
    this.reader = new FrameReader((type, flags, streamId, payload) => this.onFrame(type, flags, streamId, payload), this.maxFrameSize);
  }

  protected abstract onDataFrame(flags: number, streamId: number, payload: Buffer): void;
  /** A PRIORITY frame on a stream (not stream 0). */
  protected abstract onPriority(streamId: number, payload: Buffer): void;
  protected abstract onRstStream(streamId: number, payload: Buffer): void;
  /** A well-formed GOAWAY: the peer starts no more streams. */
  protected abstract onGoaway(payload: Buffer): void;
  /** A connection error: GOAWAY with `code`, then the end. */
  protected abstract connectionError(code: number, message: string): void;
  /** A frame for `streamId`, which is not open: an error if it never was. */
  protected abstract notOpen(streamId: number, what: string): void;
  /** A stream error on an open stream: RST_STREAM with `code`. */
  protected abstract resetOnError(stream: S, code: number, message: string): void;
  /** Sends what the windows now allow of a blocked stream's body. */
  protected abstract flushStream(stream: S): void;
  /** A WINDOW_UPDATE raised an open stream's send window. */
  protected abstract streamWindowOpened(stream: S): void;
  /** Our SETTINGS were acknowledged. */
  protected abstract settingsAcked(): void;
  /** The peer's SETTINGS are applied and acknowledged. */
  protected abstract settingsApplied(): void;
  /** A whole header block (flags: END_STREAM and SELF_DEPENDENT). */
  protected abstract onHeaderBlock(streamId: number, flags: number, fragment: Buffer): void;
  /** The ACK of one of our PINGs. */
  protected abstract pingAcked(payload: Buffer): void;

  // ---- reading

  protected onData(chunk: Buffer): void {
    if (this.dead) return;
    this.socket.cork();
    try {
      let rest = chunk;
      const preface = this.prefaceRead;
      if (preface !== undefined) {
        // The client's preface comes first; frames follow, possibly in the same read.
        const have = preface.length === 0 ? chunk : Buffer.concat([preface, chunk]);
        if (have.length < PREFACE.length) {
          this.prefaceRead = have;
          return;
        }
        if (!have.subarray(0, PREFACE.length).equals(PREFACE)) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'bad connection preface');
        this.prefaceRead = undefined;
        rest = have.subarray(PREFACE.length);
      }
      this.reader.push(rest);
    } catch (err) {
      if (err instanceof ConnectionError) this.connectionError(err.code, err.message);
      else if (err instanceof HpackError) this.connectionError(H2Error.COMPRESSION_ERROR, err.message);
      else if (err instanceof FrameSizeError) this.connectionError(H2Error.FRAME_SIZE_ERROR, err.message);
      else throw err;
    } finally {
      if (!this.socket.destroyed) this.socket.uncork();
    }
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (!this.settingsSeen) {
      if (type !== FrameType.SETTINGS || (flags & Flag.ACK) !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `the ${this.peer} preface must start with SETTINGS`);
      this.settingsSeen = true;
    }
    if (this.block && type !== FrameType.CONTINUATION) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'header block interrupted');
    switch (type) {
      case FrameType.DATA: return this.onDataFrame(flags, streamId, payload);
      case FrameType.HEADERS: return this.onHeadersFrame(flags, streamId, payload);
      case FrameType.PRIORITY:
        if (streamId === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        return this.onPriority(streamId, payload);
      case FrameType.RST_STREAM: return this.onRstStream(streamId, payload);
      case FrameType.SETTINGS: return this.onSettings(flags, streamId, payload);
      // We send ENABLE_PUSH 0 (a server may not push to us; a client never may).
      case FrameType.PUSH_PROMISE: throw new ConnectionError(H2Error.PROTOCOL_ERROR, `PUSH_PROMISE from a ${this.peer}`);
      case FrameType.PING: return this.onPing(flags, streamId, payload);
      case FrameType.GOAWAY:
        if (streamId !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'GOAWAY on a stream');
        if (payload.length < 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'short GOAWAY');
        return this.onGoaway(payload);
      case FrameType.WINDOW_UPDATE: return this.onWindowUpdate(streamId, payload);
      case FrameType.CONTINUATION: return this.onContinuation(flags, streamId, payload);
      default:
        return; // unknown types are ignored (5.5)
    }
  }

  /** A DATA frame's octets against the connection window (given back at half); returns its data without padding. */
  protected takeConnectionWindow(flags: number, payload: Buffer): Buffer {
    const length = payload.length;
    // The whole frame counts against flow control, padding included (6.9.1).
    if (length > this.recvWindow) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'connection window exceeded');
    this.recvWindow -= length;
    this.recvUnacked += length;
    // Bodies are taken in as they come, so the connection window is given back at once.
    if (this.recvUnacked >= this.connectionWindowSize / 2) {
      this.socket.write(windowUpdateFrame(0, this.recvUnacked));
      this.recvWindow += this.recvUnacked;
      this.recvUnacked = 0;
    }
    if ((flags & Flag.PADDED) === 0) return payload;
    if (length === 0 || payload[0]! >= length) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA padding too long');
    return payload.subarray(1, length - payload[0]!);
  }

  /** A stream's DATA octets read: its window is given back once half is used. */
  protected giveBackStream(stream: S, length: number): void {
    stream.recvUnacked += length;
    if (stream.recvUnacked >= this.initialWindowSize / 2) {
      this.socket.write(windowUpdateFrame(stream.id, stream.recvUnacked));
      stream.recvWindow += stream.recvUnacked;
      stream.recvUnacked = 0;
    }
  }

  protected onHeadersFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS on stream 0');
    let start = 0;
    let end = payload.length;
    if (flags & Flag.PADDED) {
      if (payload.length < 1) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'HEADERS too short');
      end -= payload[0]!;
      start = 1;
    }
    let selfDependent = false;
    if (flags & Flag.PRIORITY) {
      if (end - start < 5) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'HEADERS too short');
      selfDependent = (payload.readUInt32BE(start) & 0x7fffffff) === streamId;
      start += 5;
    }
    if (end < start) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS padding too long');
    const fragment = payload.subarray(start, end);
    if (fragment.length > this.maxHeaderBlockBytes) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'header block too large');
    // Flags of the block are kept; a self-dependent stream is marked with a high bit of our own.
    const blockFlags = (flags & Flag.END_STREAM) | (selfDependent ? SELF_DEPENDENT : 0);
    if (flags & Flag.END_HEADERS) {
      this.onHeaderBlock(streamId, blockFlags, fragment);
    } else {
      this.block = { streamId, flags: blockFlags, fragments: [fragment], bytes: fragment.length, continuations: 0 };
    }
  }

  protected onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const block = this.block;
    if (!block || block.streamId !== streamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'CONTINUATION without its HEADERS');
    block.continuations++;
    block.bytes += payload.length;
    // CONTINUATION floods (many small or empty frames, or one huge block) end the connection.
    if (block.continuations > this.maxContinuations || block.bytes > this.maxHeaderBlockBytes) {
      throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'header block too large');
    }
    block.fragments.push(payload);
    if (flags & Flag.END_HEADERS) {
      this.block = undefined;
      this.onHeaderBlock(streamId, block.flags, Buffer.concat(block.fragments, block.bytes));
    }
  }

  protected onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & Flag.ACK) {
      if (payload.length !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'SETTINGS ack with a payload');
      this.settingsAcked();
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'SETTINGS length');
    if (payload.length / 6 > this.maxSettings) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'too many settings');
    for (let p = 0; p < payload.length; p += 6) {
      const id = payload.readUInt16BE(p);
      const value = payload.readUInt32BE(p + 2);
      switch (id) {
        case Setting.ENABLE_PUSH:
          if (value > 1) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'ENABLE_PUSH');
          break;
        case Setting.MAX_CONCURRENT_STREAMS:
          this.peerMaxConcurrent = value;
          break;
        case Setting.INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'INITIAL_WINDOW_SIZE');
          // 6.9.2: every stream's send window moves by the difference, possibly below zero.
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const stream of this.streams.values()) {
            stream.sendWindow += delta;
            if (stream.sendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'window overflow');
          }
          break;
        }
        case Setting.MAX_FRAME_SIZE:
          if (value < MIN_MAX_FRAME_SIZE || value > MAX_MAX_FRAME_SIZE) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'MAX_FRAME_SIZE');
          this.peerMaxFrameSize = value;
          break;
        default:
          // HEADER_TABLE_SIZE: our encoder never indexes, so any size fits. The rest are advisory or unknown (ignored, 6.5.2).
          break;
      }
    }
    this.controlReply();
    this.socket.write(SETTINGS_ACK);
    this.flushBlocked();
    this.settingsApplied();
  }

  protected onPing(flags: number, streamId: number, payload: Buffer): void {
    if (payload.length !== 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PING length');
    if (streamId !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PING on a stream');
    if (flags & Flag.ACK) {
      this.pingAcked(payload);
      return;
    }
    this.onPingReceived?.();
    if (this.dead) return;
    this.controlReply();
    const ack = Buffer.allocUnsafe(FRAME_HEADER_BYTES + 8);
    writeFrameHeader(ack, 0, 8, FrameType.PING, Flag.ACK, 0);
    payload.copy(ack, FRAME_HEADER_BYTES);
    this.socket.write(ack);
  }

  protected onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'WINDOW_UPDATE length');
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'connection window overflow');
      this.flushBlocked();
      return;
    }
    const stream = this.streams.get(streamId);
    if (!stream) {
      this.notOpen(streamId, 'WINDOW_UPDATE'); // closed: allowed for a while (6.9)
      return;
    }
    if (increment === 0) {
      this.resetOnError(stream, H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      return;
    }
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) {
      this.resetOnError(stream, H2Error.FLOW_CONTROL_ERROR, 'stream window overflow');
      return;
    }
    this.streamWindowOpened(stream);
  }

  /** A PING or SETTINGS ack is about to be queued: refuse a peer that sends them without reading ours. */
  protected controlReply(): void {
    if (this.socket.writableLength > this.maxOutboundBytes) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'peer does not read');
  }

  // ---- writing

  /** Sends what the windows now allow of blocked bodies, in order, while the connection window lasts. */
  protected flushBlocked(): void {
    for (const stream of this.blocked) {
      if (this.sendWindow <= 0) return;
      this.flushStream(stream);
    }
  }
}
