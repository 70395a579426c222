// One received request handed to the pipeline per event-loop turn.
//
// node:http2 writes what a turn queued only after the turn: an outgoing call's frames leave in
// the check phase (a native setImmediate), after everything the poll phase read.
// A client that sends 16 requests at once therefore had all 16 parsed, filtered and forwarded in
// one turn, the 16 forwards leaving together ~13 ms after the first was ready; the sink answered
// 16, the client got 16 acknowledgements and sent 16 more, and meanwhile this process had nothing
// to do: at the closed-loop maximum the event loop was idle 15-50 % of the time with 16 requests
// in flight (docs/performance.md, "Why the event loop is not filled"). Handing on one request per
// turn lets each forward leave as soon as it is ready and lets answers in between be read, so the
// work of the sender, this process and the next hop overlaps instead of alternating.

/** Runs the first job of a turn at once and later ones one per turn, in arrival order. */
export class OnePerTurn {
  private readonly waiting: (() => void)[] = [];
  private head = 0;
  /** A job ran in the current turn: the next one waits for the check phase. */
  private ranThisTurn = false;
  private armed = false;

  constructor(private readonly defer: (fn: () => void) => unknown = setImmediate) {}

  run(job: () => void): void {
    if (!this.ranThisTurn && this.head === this.waiting.length) {
      this.ranThisTurn = true;
      this.arm();
      job();
      return;
    }
    this.waiting.push(job);
    this.arm();
  }

  /** Jobs waiting for a later turn. */
  get pending(): number {
    return this.waiting.length - this.head;
  }

  private arm(): void {
    if (this.armed) return;
    this.armed = true;
    this.defer(this.next);
  }

  private readonly next = (): void => {
    this.armed = false;
    this.ranThisTurn = false;
    if (this.head === this.waiting.length) return;
    const job = this.waiting[this.head]!;
    this.waiting[this.head++] = noop;
    if (this.head === this.waiting.length) {
      this.waiting.length = 0;
      this.head = 0;
    }
    this.ranThisTurn = true;
    // Armed before the job runs, so a job that throws does not strand the ones behind it.
    this.arm();
    job();
  };
}

function noop(): void {
  // a job already run
}

/** The process's one scheduler: the turn is the event loop's, shared by every receiver. */
export const exportTurns = new OnePerTurn();

/** Runs `job` (handing a request to the pipeline) at once or in a later turn, see above. */
export function inTurn(job: () => void): void {
  if (ONE_PER_TURN) exportTurns.run(job);
  else job();
}

/** Resolves when it is this request's turn (at once when it is the first of the turn). */
export function exportTurn(): Promise<void> {
  return new Promise<void>((resolve) => inTurn(resolve));
}

/** Off (=0) only for the A/B runs in docs/performance.md. */
const ONE_PER_TURN = process.env.SPANSIEVE_EXPERIMENT_ONE_PER_TURN !== '0';
