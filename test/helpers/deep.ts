// Attribute values nested many levels deep, built in time linear in the depth: every level is a
// prefix written before the innermost value, so nothing is copied once per level.

export type DeepKind = 'kvlist' | 'array';

function varint(value: number): number[] {
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

const varintSize = (value: number): number => varint(value).length;

/** The leaf every deep value ends in: AnyValue{string_value: "x"}. */
const LEAF = [0x0a, 0x01, 0x78];

/**
 * An AnyValue holding `depth` nested kvlist or array values around the string "x": depth 1 is a
 * kvlist {k: "x"} (or the array ["x"]), so the string sits at nesting level depth + 1.
 */
export function deepAnyValue(kind: DeepKind, depth: number): Buffer {
  // sizes[i]: the encoded size of the AnyValue with i levels.
  const sizes = new Array<number>(depth + 1);
  const inner = new Array<number>(depth + 1);
  sizes[0] = LEAF.length;
  for (let i = 1; i <= depth; i++) {
    const child = sizes[i - 1]!;
    if (kind === 'array') {
      // ArrayValue{values: child}
      inner[i] = 1 + varintSize(child) + child;
    } else {
      // KeyValueList{values: KeyValue{key: "k", value: child}}
      const kv = 3 + 1 + varintSize(child) + child;
      inner[i] = 1 + varintSize(kv) + kv;
    }
    sizes[i] = 1 + varintSize(inner[i]!) + inner[i]!;
  }
  const out = Buffer.allocUnsafe(sizes[depth]!);
  let pos = 0;
  const put = (bytes: number[]) => {
    for (const b of bytes) out[pos++] = b;
  };
  for (let i = depth; i >= 1; i--) {
    const child = sizes[i - 1]!;
    if (kind === 'array') {
      put([0x2a, ...varint(inner[i]!), 0x0a, ...varint(child)]);
    } else {
      const kv = 3 + 1 + varintSize(child) + child;
      put([0x32, ...varint(inner[i]!), 0x0a, ...varint(kv), 0x0a, 0x01, 0x6b, 0x12, ...varint(child)]);
    }
  }
  put(LEAF);
  if (pos !== out.length) throw new Error('deepAnyValue: size mismatch');
  return out;
}

/** The same value as OTLP/JSON. */
export function deepAnyValueJson(kind: DeepKind, depth: number): string {
  const open = kind === 'array' ? '{"arrayValue":{"values":[' : '{"kvlistValue":{"values":[{"key":"k","value":';
  const close = kind === 'array' ? ']}}' : '}]}}';
  return `${open.repeat(depth)}{"stringValue":"x"}${close.repeat(depth)}`;
}

function field(num: number, payload: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(varint(num * 8 + 2)), Buffer.from(varint(payload.length)), payload]);
}
const text = (num: number, s: string): Buffer => field(num, Buffer.from(s, 'utf8'));
const keyValue = (key: string, value: Uint8Array): Buffer => field(1, Buffer.concat([text(1, key), field(2, value)]));

export const DEEP_TRACE_ID = Buffer.from('0102030405060708090a0b0c0d0e0f10', 'hex');
export const DEEP_SPAN_ID = Buffer.from('1112131415161718', 'hex');

/**
 * An ExportTraceServiceRequest with one resource (service.instance.id `instance`, and the
 * resource attribute `deep` holding `value`) and one valid span.
 */
export function deepTraceRequest(instance: string, value: Uint8Array): Buffer {
  const resource = Buffer.concat([keyValue('service.instance.id', text(1, instance)), keyValue('deep', value)]);
  const span = Buffer.concat([field(1, DEEP_TRACE_ID), field(2, DEEP_SPAN_ID), text(5, 'deep-span')]);
  const scopeSpans = field(2, span);
  return field(1, Buffer.concat([field(1, resource), field(2, scopeSpans)]));
}

/** The same request as OTLP/JSON. */
export function deepTraceRequestJson(instance: string, valueJson: string): string {
  return (
    `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.instance.id","value":{"stringValue":${JSON.stringify(instance)}}},` +
    `{"key":"deep","value":${valueJson}}]},"scopeSpans":[{"spans":[{"traceId":"${DEEP_TRACE_ID.toString('hex')}",` +
    `"spanId":"${DEEP_SPAN_ID.toString('hex')}","name":"deep-span"}]}]}]}`
  );
}
