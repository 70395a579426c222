/**
 * What a call needs of a cancellation signal: the members of AbortSignal a push uses, so that an
 * AbortSignal is one too (tests and callers outside the helper pass those).
 */
export interface CallSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** What a push is given: a CallSignal, and an AbortSignal on demand for APIs that take one (http.request). */
export interface PushSignal extends CallSignal {
  toAbortSignal(): AbortSignal;
}

/**
 * One attempt's cancellation, as an AbortController's signal behaves for what pushes use of it,
 * without one per attempt: Node's AbortController and its EventTarget listeners were a measurable
 * share of an export's CPU at a fixed rate (docs/performance.md). Listeners run once, in the order
 * added, on the first abort(); one added after the abort is never called, as with AbortSignal.
 */
export class AttemptSignal implements PushSignal {
  aborted = false;
  reason: unknown = undefined;
  /** performance.now() after which the helper aborts the attempt; Infinity: no deadline. */
  deadline: number;
  /** The one listener most calls add; further ones in `more`. */
  private first: (() => void) | undefined = undefined;
  private more: (() => void)[] | undefined = undefined;
  private controller: AbortController | undefined = undefined;

  constructor(deadline: number) {
    this.deadline = deadline;
  }

  addEventListener(type: 'abort', listener: () => void, _options?: { once?: boolean }): void {
    if (type !== 'abort' || this.aborted) return;
    // As EventTarget: the same listener added twice is called once.
    if (this.first === listener || this.more?.includes(listener)) return;
    if (this.first === undefined) this.first = listener;
    else (this.more ??= []).push(listener);
  }

  removeEventListener(type: 'abort', listener: () => void): void {
    if (type !== 'abort') return;
    if (this.first === listener) {
      this.first = this.more?.shift();
      return;
    }
    const i = this.more?.indexOf(listener) ?? -1;
    if (i >= 0) this.more!.splice(i, 1);
  }

  /** An AbortSignal that aborts with this one (made on first use; already aborted if this is). */
  toAbortSignal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
    const first = this.first;
    const more = this.more;
    this.first = undefined;
    this.more = undefined;
    if (first) call(first);
    if (more) for (const listener of more) call(listener);
  }
}

/** A throwing listener does not stop the others; its error is reported as an uncaught one, as EventTarget does. */
function call(listener: () => void): void {
  try {
    listener();
  } catch (err) {
    process.nextTick(() => {
      throw err;
    });
  }
}
