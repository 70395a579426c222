import { performance } from 'node:perf_hooks';

/**
 * One log line per interval for an event that can repeat thousands of times a second (a refusal
 * storm while a backend is down); the lines in between are counted, and the next line that gets
 * through says how many were left out. The metric that counts the event stays exact.
 */
export class LogThrottle {
  private lastLoggedAt = -Infinity;
  private suppressed = 0;

  constructor(
    private readonly intervalMs = 10_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** undefined: do not log this one. A number: log it, with how many were left out since the last line. */
  take(): number | undefined {
    const now = this.now();
    if (now - this.lastLoggedAt < this.intervalMs) {
      this.suppressed++;
      return undefined;
    }
    this.lastLoggedAt = now;
    const left = this.suppressed;
    this.suppressed = 0;
    return left;
  }
}
