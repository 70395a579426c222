import type { Logger } from 'pino';
import type { Consumer, CreateSettings, InstanceRecorder } from '../../component/component';
import { PermanentError, RetryableError, errorMessage } from '../../component/errors';
import type { Signal } from '../../pdata/batch';
import { JsonShapeError, encodeFromOtlpJson, types } from '../../pdata/codec';
import { parseRequest, type ResourcePredicate } from '../../pdata/scan';
import { WireFormatError } from '../../pdata/wire';
import { LogThrottle } from '../../util/log-throttle';
import { cappedMessage } from './echo';

export type Transport = 'grpc' | 'http';

/** The backoff asked of a client refused for a reason that names none (a full queue). */
const DEFAULT_RETRY_AFTER_MS = 1000;
const EMPTY_PROTOBUF_RESPONSE = Buffer.alloc(0);
const EMPTY_JSON_RESPONSE = Buffer.from('{}');
export type BodyEncoding = 'protobuf' | 'json';

/** What a transport must answer, independent of gRPC or HTTP. */
export type ExportOutcome =
  | { kind: 'ok'; rejected: number; message: string }
  | { kind: 'invalid'; message: string }
  | { kind: 'unavailable'; message: string; retryAfterMs: number }
  | { kind: 'unimplemented'; message: string };

/** The outcome of a request taken whole: one shared object, not one per request. */
const OK: ExportOutcome = Object.freeze({ kind: 'ok', rejected: 0, message: '' });

/** Per-signal, per-transport handling of one export request: parse, hand on, count, classify. */
export class ExportHandler {
  private readonly accepted: { inc(n: number): void };
  private readonly refused: { inc(n: number): void };
  private readonly logger: Logger;
  private readonly inventory: InstanceRecorder | undefined;
  /** Lets the parser skip checking resources that no pipeline keeps. */
  private readonly mayKeep: ResourcePredicate | undefined;
  /** Refusals come in storms (a full queue refuses every request): one warn line per 10 s. */
  private readonly refusalLog = new LogThrottle();

  constructor(
    settings: CreateSettings,
    transport: Transport,
    private readonly signal: Signal,
    private readonly next: Consumer | undefined,
  ) {
    const labels = { receiver: settings.id, transport };
    this.accepted = settings.telemetry.signalCounter('receiver_accepted', signal, 'Number of items successfully pushed into the pipeline', labels);
    this.refused = settings.telemetry.signalCounter('receiver_refused', signal, 'Number of items that could not be pushed into the pipeline', labels);
    this.logger = settings.logger;
    this.inventory = settings.inventory;
    this.mayKeep = next?.mayKeep?.bind(next);
  }

  async export(body: Uint8Array, encoding: BodyEncoding): Promise<ExportOutcome> {
    if (!this.next) {
      return { kind: 'unimplemented', message: `no ${this.signal} pipeline uses this receiver` };
    }
    let parsed;
    try {
      const bytes = encoding === 'json' ? encodeFromOtlpJson(this.requestType(), parseJson(body)) : body;
      parsed = parseRequest(this.signal, bytes, this.mayKeep);
    } catch (err) {
      const what = encoding === 'json' ? 'OTLP/JSON' : 'OTLP protobuf';
      if (err instanceof WireFormatError || err instanceof JsonShapeError) {
        return { kind: 'invalid', message: `invalid ${what} ${this.signal} request: ${err.message}` };
      }
      // Reading recurses nowhere deeper than a few hundred levels; should a request still exhaust
      // the stack, it is the request that cannot be read: retrying it (5xx) would never succeed.
      if (err instanceof RangeError && err.message.includes('call stack')) {
        this.logger.warn({ err: err.message }, 'an export request exhausted the stack while being read');
        return { kind: 'invalid', message: `invalid ${what} ${this.signal} request: nested too deep to read` };
      }
      throw err;
    }
    const { batch } = parsed;
    if (this.inventory) for (const block of batch.resources) this.inventory.observe(block, this.signal);
    if (parsed.rejected > 0) this.refused.inc(parsed.rejected);
    if (batch.resources.length > 0) {
      try {
        await this.next.consume(batch);
      } catch (err) {
        this.refused.inc(batch.itemCount);
        if (err instanceof PermanentError) return { kind: 'invalid', message: err.message };
        const suppressed = this.refusalLog.take();
        if (suppressed !== undefined) this.logger.warn({ err: errorMessage(err), items: batch.itemCount, suppressed }, 'refused export request; the client should retry');
        const retryAfterMs = err instanceof RetryableError && err.retryAfterMs !== undefined ? err.retryAfterMs : DEFAULT_RETRY_AFTER_MS;
        return { kind: 'unavailable', message: errorMessage(err), retryAfterMs };
      }
    }
    this.accepted.inc(batch.itemCount);
    return parsed.rejected === 0 && parsed.rejectMessage === '' ? OK : { kind: 'ok', rejected: parsed.rejected, message: parsed.rejectMessage };
  }

  /**
   * The answer for a request refused before its body is read, when its pipeline would refuse any
   * batch now (a full sending queue); undefined when the request should be read.
   */
  refusalBeforeReading(): Extract<ExportOutcome, { kind: 'unavailable' }> | undefined {
    const reason = this.next?.wouldRefuse?.();
    if (reason === undefined) return undefined;
    const suppressed = this.refusalLog.take();
    if (suppressed !== undefined) this.logger.warn({ err: reason, suppressed }, 'refused export request before reading it; the client should retry');
    return { kind: 'unavailable', message: reason, retryAfterMs: DEFAULT_RETRY_AFTER_MS };
  }

  /** The Export response for a success, partial or whole. */
  responseBytes(outcome: { rejected: number; message: string }, encoding: BodyEncoding): Buffer {
    // A full success is the empty message: zero bytes in protobuf, {} in JSON. No need to encode it.
    if (outcome.rejected === 0) return encoding === 'json' ? EMPTY_JSON_RESPONSE : EMPTY_PROTOBUF_RESPONSE;
    const type = this.signal === 'traces' ? types.ExportTraceServiceResponse : types.ExportMetricsServiceResponse;
    const partial =
      outcome.rejected === 0
        ? {}
        : {
            partialSuccess:
              this.signal === 'traces'
                ? { rejectedSpans: outcome.rejected, errorMessage: cappedMessage(outcome.message) }
                : { rejectedDataPoints: outcome.rejected, errorMessage: cappedMessage(outcome.message) },
          };
    if (encoding === 'json') {
      return Buffer.from(JSON.stringify(type.toObject(type.fromObject(partial), { longs: String, defaults: false })));
    }
    const bytes = type.encode(type.fromObject(partial)).finish();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private requestType() {
    return this.signal === 'traces' ? types.ExportTraceServiceRequest : types.ExportMetricsServiceRequest;
  }
}

function parseJson(body: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  } catch (err) {
    throw new JsonShapeError(`body is not valid JSON (${(err as Error).message})`);
  }
}
