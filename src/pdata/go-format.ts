import type { AttrValue } from './attributes';

// Attribute values as text the way the Collector writes them (pdata's Value.AsString), for
// components that must produce the Collector's keys and labels: a double keeps its double form
// ("1e+21", "2.5", "5"), an int its decimal digits, maps and lists are JSON with sorted keys.

/** A float64 as pdata's AsString writes it: ES6 number formatting, except that -0 stays "-0". */
export function goFloatString(value: number): string {
  if (Object.is(value, -0)) return '-0';
  // Same cut-offs as JavaScript's Number#toString (exponent below 1e-6 and from 1e21 on).
  return String(value);
}

/**
 * AsString of a value; `isDouble` says the top-level number was a double on the wire (the
 * decoded AttrValue cannot tell 5.0 from 5). Nested numbers need no such flag: JSON writes a
 * whole double and an int alike.
 */
export function goAsString(value: AttrValue, isDouble = false): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return isDouble || !Number.isInteger(value) || !Number.isSafeInteger(value) ? goFloatString(value) : String(value);
  if (typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value === null) return '';
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  return goJson(value);
}

function goJson(value: AttrValue): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') return Number.isFinite(value) ? goFloatString(value) : 'null';
  if (typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value instanceof Uint8Array) return JSON.stringify(Buffer.from(value).toString('base64'));
  if (Array.isArray(value)) return `[${(value as readonly AttrValue[]).map(goJson).join(',')}]`;
  const record = value as { readonly [key: string]: AttrValue };
  // encoding/json writes map keys sorted.
  const keys = Object.keys(record).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${goJson(record[k]!)}`).join(',')}}`;
}
