/** Longest piece of a request (path, header) quoted back in an error message. */
const ECHO_MAX_CHARS = 200;

/** What a client sent, cut for quoting in an answer: a long header must not become a longer answer. */
export function echoed(text: string): string {
  return text.length <= ECHO_MAX_CHARS ? text : `${text.slice(0, ECHO_MAX_CHARS)}... (${text.length} characters)`;
}

/** Longest error message either server sends, in UTF-8 bytes (a longer one is cut, saying so). */
export const MAX_ERROR_MESSAGE_BYTES = 1024;

/** An error message cut to MAX_ERROR_MESSAGE_BYTES: whatever the input, the answer stays small. */
export function cappedMessage(message: string): string {
  const bytes = Buffer.byteLength(message, 'utf8');
  if (bytes <= MAX_ERROR_MESSAGE_BYTES) return message;
  const suffix = `... (${bytes} bytes, cut)`;
  // Cut on bytes; a character split at the cut decodes to U+FFFD, dropped.
  const head = Buffer.from(message, 'utf8')
    .subarray(0, MAX_ERROR_MESSAGE_BYTES - suffix.length)
    .toString('utf8')
    .replace(/\uFFFD+$/, '');
  return head + suffix;
}
