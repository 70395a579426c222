// Error classes decide what happens next: a permanent error is not retried and becomes
// INVALID_ARGUMENT / 400 at a receiver; a retryable one is retried by exporters and becomes
// UNAVAILABLE / 503 at a receiver, so the client retries instead of losing the data.

export class PermanentError extends Error {
  override readonly name = 'PermanentError';
}

export class RetryableError extends Error {
  override readonly name = 'RetryableError';

  constructor(
    message: string,
    /** Server-requested delay (Retry-After, RetryInfo), in milliseconds. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export function isPermanent(err: unknown): boolean {
  return err instanceof PermanentError;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
