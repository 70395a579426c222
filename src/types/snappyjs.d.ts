// snappyjs ships no type declarations; these cover the two functions spansieve uses.
declare module 'snappyjs' {
  /** Snappy block format (not the framing format). */
  export function compress<T extends Uint8Array | ArrayBuffer>(input: T): T;
  export function uncompress<T extends Uint8Array | ArrayBuffer>(input: T, maxLength?: number): T;
}
