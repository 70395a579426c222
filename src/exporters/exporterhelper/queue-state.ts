// The life of an exporter helper's sending queue, from running to one of three ends: drained (a
// shutdown sent everything), handed over (a reload gave the unsent batches to the successor) or
// abandoned (the shutdown deadline dropped them). docs/exporterhelper.md draws it.

/**
 * - `running`: takes batches, sends them, retries.
 * - `releasing`: a reload is coming (prepareRelease): still takes batches, but sends no new one and
 *   retries none; they are set aside for the successor.
 * - `handingOver`: releaseQueue: refuses batches, waits for the attempts in flight, then returns
 *   what is unsent (a persistent queue leaves it on disk and closes).
 * - `draining`: shutdown of an in-memory queue: refuses batches, sends everything queued.
 * - `abandoning`: the shutdown deadline passed: refuses batches, aborts attempts in flight, then
 *   drops what is unsent (counted as failed).
 * - `drained`, `handedOver`, `abandoned`: stopped, by each of the three ways.
 */
export type QueueState = 'running' | 'releasing' | 'handingOver' | 'draining' | 'abandoning' | 'drained' | 'handedOver' | 'abandoned';

/**
 * What happens to the queue: a call of the exporter's owner (adopt, prepareRelease, release,
 * drain: an in-memory shutdown, abandon: the deadline) or `done`, the end of the step under way.
 */
export type QueueEvent = 'adopt' | 'prepareRelease' | 'release' | 'drain' | 'abandon' | 'done';

export interface StateBehaviour {
  /** consume() queues (or sends) a new batch; otherwise it refuses it, retryably. */
  readonly takesBatches: boolean;
  /** Workers take batches from the queue and failed attempts wait out their backoff; otherwise batches are set aside. */
  readonly sends: boolean;
}

/** Read on the hot path (consume, pump, each failed attempt): constant objects, nothing allocated. */
export const BEHAVIOUR: Readonly<Record<QueueState, StateBehaviour>> = {
  running: { takesBatches: true, sends: true },
  releasing: { takesBatches: true, sends: false },
  handingOver: { takesBatches: false, sends: false },
  draining: { takesBatches: false, sends: true },
  abandoning: { takesBatches: false, sends: false },
  // Nothing is queued any more; callers without a sending queue still retry their own batches until abandoned.
  drained: { takesBatches: false, sends: true },
  handedOver: { takesBatches: false, sends: false },
  abandoned: { takesBatches: false, sends: false },
};

/**
 * Every allowed transition; a pair not listed is a programming error. A state mapped to itself
 * accepts the call without changing (a second shutdown, an abandon after the end).
 */
export const TRANSITIONS: Readonly<Record<QueueState, Readonly<Partial<Record<QueueEvent, QueueState>>>>> = {
  running: { adopt: 'running', prepareRelease: 'releasing', release: 'handingOver', drain: 'draining', abandon: 'abandoning' },
  // A persistent queue's shutdown releases too (its batches stay on disk), after a deadline put it here.
  releasing: { prepareRelease: 'releasing', release: 'handingOver', abandon: 'abandoning' },
  // The hand-over keeps its batches; an abandon only aborts the attempts it waits for.
  handingOver: { abandon: 'handingOver', done: 'handedOver' },
  draining: { drain: 'draining', abandon: 'abandoning', done: 'drained' },
  // Abandoning after a drain still cuts short the retries of callers without a sending queue.
  drained: { drain: 'drained', abandon: 'abandoning' },
  // A reload whose predecessor the deadline abandoned gets nothing to hand over.
  abandoning: { prepareRelease: 'abandoning', release: 'abandoning', drain: 'abandoning', abandon: 'abandoning', done: 'abandoned' },
  abandoned: { prepareRelease: 'abandoned', release: 'abandoned', drain: 'abandoned', abandon: 'abandoned' },
  handedOver: { drain: 'handedOver', abandon: 'handedOver' },
};

export class IllegalTransitionError extends Error {
  constructor(
    readonly state: QueueState,
    readonly event: QueueEvent,
    id: string,
  ) {
    super(`exporter ${id}: ${event} is not allowed in state ${state} (a bug in the caller of the exporter helper)`);
    this.name = 'IllegalTransitionError';
  }
}

/** The one place that decides a transition: the next state, or IllegalTransitionError. */
export function nextState(state: QueueState, event: QueueEvent, id: string): QueueState {
  const next = TRANSITIONS[state][event];
  if (next === undefined) throw new IllegalTransitionError(state, event, id);
  return next;
}
