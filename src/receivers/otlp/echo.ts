/** Longest piece of a request (path, header) quoted back in an error message. */
const ECHO_MAX_CHARS = 200;

/** What a client sent, cut for quoting in an answer: a long header must not become a longer answer. */
export function echoed(text: string): string {
  return text.length <= ECHO_MAX_CHARS ? text : `${text.slice(0, ECHO_MAX_CHARS)}... (${text.length} characters)`;
}
