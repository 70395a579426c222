import type { Logger } from 'pino';
import * as zlib from 'node:zlib';
import { DecompressError, decompress, type Compression } from '../../util/compression';
import { LogThrottle } from '../../util/log-throttle';

/**
 * Bytes of request bodies being received or parsed at once by one otlp receiver, across its gRPC
 * and HTTP servers (`max_inflight_bytes`). Many slow large uploads would otherwise add up to any
 * amount of memory; a request that does not fit is refused with a retryable code instead.
 */
export class InflightBytes {
  private used = 0;

  /** `limit` 0: no cap. `observe` is told the bytes held after each change (a gauge). */
  constructor(
    readonly limit: number,
    private readonly observe: (bytes: number) => void = () => undefined,
  ) {}

  get bytes(): number {
    return this.used;
  }

  /**
   * Reserves `n` bytes; false when they would pass the cap. One request is always let in when
   * nothing else is (`own`: what the asking request holds already), so a cap below the largest
   * allowed request still lets it through one at a time.
   */
  tryReserve(n: number, own = 0): boolean {
    if (this.limit > 0 && this.used > own && this.used + n > this.limit) return false;
    this.used += n;
    this.observe(this.used);
    return true;
  }

  release(n: number): void {
    if (n <= 0) return;
    this.used = Math.max(0, this.used - n);
    this.observe(this.used);
  }
}

/** What one request holds of the budget; released once, whichever way the request ends. */
export class Reservation {
  private held = 0;

  constructor(private readonly budget: InflightBytes) {}

  /** Adds `n` bytes to what this request holds; false (nothing added) when the cap refuses them. */
  grow(n: number): boolean {
    if (n <= 0) return true;
    if (!this.budget.tryReserve(n, this.held)) return false;
    this.held += n;
    return true;
  }

  get bytes(): number {
    return this.held;
  }

  release(): void {
    this.budget.release(this.held);
    this.held = 0;
  }
}

/** A request whose decompressed bytes do not fit in max_inflight_bytes: refused as one over it on arrival. */
export class InflightExceeded extends Error {
  constructor() {
    super('max_inflight_bytes reached while decompressing');
  }
}

/** Output chunk of the streaming inflate: the budget is asked once per chunk. */
const INFLATE_CHUNK = 64 * 1024;

/**
 * `data` decompressed into at most `limit` bytes (DecompressError past it or when malformed, as
 * decompress()), what it inflates to held by `reservation` too: gzip and deflate reserve each chunk
 * as it comes out, so N small bodies that each inflate to many MiB are bounded together and one
 * that does not fit stops inflating (InflightExceeded); zstd and snappy decode in one call on this
 * thread (one at a time) and reserve the result.
 */
export async function decompressReserved(compression: Compression, data: Uint8Array, limit: number, reservation: Reservation): Promise<Buffer> {
  if (compression !== 'gzip' && compression !== 'deflate') {
    const out = await decompress(compression, data, limit);
    if (!reservation.grow(out.length)) throw new InflightExceeded();
    return out;
  }
  const options = { chunkSize: INFLATE_CHUNK };
  const inflate = compression === 'gzip' ? zlib.createGunzip(options) : zlib.createInflate(options);
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      chunks.length = 0;
      inflate.destroy();
      reject(err);
    };
    inflate.on('data', (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (size > limit) fail(new DecompressError(true, `decompressed size exceeds the limit of ${limit} bytes`));
      else if (!reservation.grow(chunk.length)) fail(new InflightExceeded());
      else chunks.push(chunk);
    });
    inflate.on('error', (err: Error) => fail(new DecompressError(false, `invalid ${compression} data: ${err.message}`)));
    inflate.on('end', () => {
      if (settled) return;
      settled = true;
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    inflate.end(data);
  });
}

/** A server's own counters for what it refuses before a request reaches the pipelines. */
export interface ServerCounters {
  connectionRefused(reason: 'max_connections' | 'fd_limit'): void;
  inflightRefused(): void;
  unauthenticated(): void;
}

export const NO_COUNTERS: ServerCounters = { connectionRefused: () => undefined, inflightRefused: () => undefined, unauthenticated: () => undefined };

/** The backoff asked of a client refused because max_inflight_bytes is reached. */
export const INFLIGHT_RETRY_AFTER_MS = 1000;

/**
 * What one server refuses before a request reaches the pipelines (a connection over a limit, a
 * request over max_inflight_bytes): counted exactly, logged at most once per throttle interval.
 */
export class ServerRefusals {
  private readonly log = new LogThrottle();
  /** Its own throttle: a client with a wrong token must not hide the other refusals' lines. */
  private readonly authLog = new LogThrottle();

  /** `server` and `request` name the transport and what it refuses in log lines ("OTLP/gRPC", "call"). */
  constructor(
    private readonly counters: ServerCounters,
    private readonly logger: Logger,
    private readonly server: string,
    private readonly request: string,
  ) {}

  connection(reason: 'max_connections' | 'fd_limit'): void {
    this.counters.connectionRefused(reason);
    const suppressed = this.log.take();
    if (suppressed !== undefined) this.logger.warn({ reason, suppressed }, `${this.server} connection closed at once: too many connections open`);
  }

  /** Counts and logs a request refused by `budget`; returns the message for the client. */
  inflight(budget: InflightBytes): string {
    this.counters.inflightRefused();
    const suppressed = this.log.take();
    if (suppressed !== undefined) {
      this.logger.warn({ inflightBytes: budget.bytes, limit: budget.limit, suppressed }, `refused ${this.server} ${this.request}: max_inflight_bytes reached; the client should retry`);
    }
    return `too many request bytes being received at once (max_inflight_bytes ${budget.limit}); retry later`;
  }

  /** Counts and logs a request the authenticator refused (`reason` names no secret); returns the message for the client. */
  unauthenticated(reason: string, remote: string | undefined): string {
    this.counters.unauthenticated();
    const suppressed = this.authLog.take();
    if (suppressed !== undefined) this.logger.warn({ reason, remote, suppressed }, `refused ${this.server} ${this.request}: unauthenticated`);
    return `unauthenticated: ${reason}`;
  }
}
