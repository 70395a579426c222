import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ConditionSequence, DATAPOINT_CONTEXT, METRIC_CONTEXT, METRIC_CONTEXTS, OttlCompileError, OttlRuntimeError, RESOURCE_CONTEXT,
  SPAN_CONTEXT, SPAN_EVENT_CONTEXT, TRACE_CONTEXTS, compileCondition, compileConditions, inferContext,
  type OttlContext, type OttlValue, type TelemetryItem,
} from '../../src/ottl';

const attrs = (o: Record<string, OttlValue>): Map<string, OttlValue> => new Map(Object.entries(o));

const ITEM: TelemetryItem = {
  resource: { attributes: attrs({ 'service.name': 'checkout', 'service.instance.id': 'host-a:100', 'pid': 100n }) },
  scope: { name: 'obi', version: '1.0' },
  span: {
    traceId: new Uint8Array(16).fill(0xab),
    spanId: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]),
    name: 'GET /health',
    kind: 2,
    startTimeUnixNano: 1_000_000_000n,
    endTimeUnixNano: 1_250_000_000n,
    status: { code: 2, message: 'boom' },
    attributes: attrs({
      'url.path': '/health', 'http.status': 200n, 'ratio': 0.5, 'ok': true, 'empty': '',
      'list': ['a', 'b', 1n], 'nested': attrs({ inner: attrs({ x: 'y' }), arr: [10n, 20n] }), 'bytes': Uint8Array.from([0xde, 0xad]),
    }),
  },
  spanEvent: { name: 'exception', attributes: attrs({ 'exception.type': 'IOError' }) },
};

function ev(cond: string, ctx: OttlContext<TelemetryItem> = SPAN_CONTEXT, item: TelemetryItem = ITEM): boolean {
  return compileCondition(cond, ctx).eval(item);
}

const compileErr = (cond: string, re: RegExp, ctx: OttlContext<TelemetryItem> = SPAN_CONTEXT): void => {
  assert.throws(() => compileCondition(cond, ctx), (e: unknown) => e instanceof OttlCompileError && re.test(e.message), cond);
};
const runtimeErr = (cond: string, re: RegExp, ctx: OttlContext<TelemetryItem> = SPAN_CONTEXT): void => {
  const c = compileCondition(cond, ctx);
  assert.throws(() => c.eval(ITEM), (e: unknown) => e instanceof OttlRuntimeError && re.test(e.message), cond);
};

test('paths: resource, scope, span fields, nested keys, enums, ids', () => {
  assert.equal(ev('resource.attributes["service.instance.id"] == "host-a:100"'), true);
  assert.equal(ev('resource.attributes["service.instance.id"] != "host-a:100"'), false);
  assert.equal(ev('instrumentation_scope.name == "obi" and scope.version == "1.0"'), true);
  assert.equal(ev('attributes["url.path"] == "/health" and name == "GET /health"'), true);
  assert.equal(ev('span.attributes["nested"]["inner"]["x"] == "y"'), true);
  assert.equal(ev('attributes["nested"]["arr"][1] == 20'), true);
  assert.equal(ev('attributes["list"][2] == 1.0'), true);
  assert.equal(ev('kind == SPAN_KIND_SERVER and status.code == STATUS_CODE_ERROR'), true);
  assert.equal(ev('kind.string == "Server" and kind.deprecated_string == "SPAN_KIND_SERVER"'), true);
  assert.equal(ev('status.message == "boom"'), true);
  assert.equal(ev('trace_id == TraceID(0xabababababababababababababababab)'), true);
  assert.equal(ev('trace_id.string == "abababababababababababababababab"'), true);
  assert.equal(ev('span_id == SpanID(0x0102030405060708)'), true);
  assert.equal(ev('span_id == 0x0102030405060708'), false, 'a SpanID is never equal to bytes');
  assert.equal(ev('parent_span_id.string == "" and IsRootSpan()'), true);
  assert.equal(ev('end_time_unix_nano - start_time_unix_nano > 200000000'), true);
  assert.equal(ev('end_time - start_time == Duration("250ms")'), true);
  assert.equal(ev('attributes["bytes"] == 0xdead'), true);
});

test('missing attributes are nil; mixed types follow compare.go', () => {
  assert.equal(ev('attributes["nope"] == nil'), true);
  assert.equal(ev('attributes["nope"] != "x"'), true);
  assert.equal(ev('attributes["nope"] == "x"'), false);
  assert.equal(ev('resource.attributes["pid"] == "100"'), false, 'an int attribute is not the string "100"');
  assert.equal(ev('resource.attributes["pid"] != "100"'), true);
  assert.equal(ev('resource.attributes["pid"] > "1"'), false);
  assert.equal(ev('attributes["http.status"] >= 200.0'), true);
  assert.equal(ev('attributes["nope"]["deeper"] == nil'), true, 'a missing key stops the walk with nil');
});

test('path indexing errors at evaluation: wrong type, out of range, int key on a map', () => {
  runtimeErr('attributes["url.path"]["x"] == nil', /type Str does not support string indexing/);
  runtimeErr('attributes["list"][5] == nil', /index 5 out of bounds/);
  runtimeErr('attributes[0] == nil', /unable to resolve a string index in map/);
});

test('literals fold; math; division by zero is a runtime error', () => {
  const c = compileCondition('1 == 1 or attributes["x"] == 2', SPAN_CONTEXT);
  assert.equal(c.constant, true);
  assert.equal(compileCondition('"a" == 1', SPAN_CONTEXT).constant, false);
  assert.equal(ev('attributes["http.status"] * 2 + 1 == 401'), true);
  assert.equal(ev('attributes["http.status"] / 3 == 66'), true, 'int64 division truncates');
  assert.equal(ev('attributes["http.status"] / 3.0 > 66.6'), true);
  assert.equal(ev('-attributes["http.status"] == -200'), true);
  runtimeErr('attributes["http.status"] / 0 == 1', /attempted to divide by 0/);
  runtimeErr('attributes["url.path"] + 1 == 1', /must be int64, float64, time.Time or time.Duration/);
});

test('converters: normal, nil and type-error cases', () => {
  const cases: [string, boolean][] = [
    ['IsMatch(attributes["url.path"], "^/heal")', true],
    ['IsMatch(attributes["nope"], ".*")', false],
    ['IsMatch(attributes["http.status"], "^20")', true],
    ['IsMatch(resource.attributes["service.name"], "(?i)CHECK")', true],
    ['ContainsValue(["host-a:100", "host-b:1"], resource.attributes["service.instance.id"])', true],
    ['ContainsValue(["100"], resource.attributes["pid"])', false],
    ['ContainsValue([100, 200], resource.attributes["pid"])', true],
    ['ContainsValue(attributes["list"], 1)', true],
    ['IsString(attributes["url.path"])', true],
    ['IsString(attributes["http.status"])', false],
    ['IsString(attributes["nope"])', false],
    ['IsInt(attributes["http.status"])', true],
    ['IsInt(attributes["ratio"])', false],
    ['IsDouble(attributes["ratio"])', true],
    ['IsBool(attributes["ok"])', true],
    ['IsMap(attributes["nested"])', true],
    ['IsMap(attributes["list"])', false],
    ['IsList(attributes["list"])', true],
    ['IsList(attributes["nope"])', false],
    ['IsEmpty(attributes["empty"]) and IsEmpty(attributes["nope"]) and not IsEmpty(name)', true],
    ['Len(attributes["url.path"]) == 7', true],
    ['Len("é") == 2', true],
    ['Len(attributes["list"]) == 3 and Len(attributes["nested"]) == 2', true],
    ['Concat([name, attributes["nope"], 1], "|") == "GET /health|<nil>|1"', true],
    ['Int("42") == 42 and Int(2.9) == 2 and Int(true) == 1 and Int(attributes["nope"]) == nil', true],
    ['Double("1.5") == 1.5 and Double(2) == 2.0', true],
    ['String(attributes["http.status"]) == "200" and String(attributes["bytes"]) == "dead"', true],
    ['String(attributes["nested"]) == "{\\"arr\\":[10,20],\\"inner\\":{\\"x\\":\\"y\\"}}"', true],
    ['String(attributes["ratio"]) == "0.5"', true],
    ['Bool("true") and not Bool(0)', true],
    ['ToLowerCase(name) == "get /health" and ToUpperCase(name) == "GET /HEALTH"', true],
    ['Substring(name, 4, 3) == "/he"', true],
    ['Split(attributes["url.path"], "/")[1] == "health"', true],
    ['Split("a,b", ",") == ["a", "b"]', true],
    ['HasPrefix(name, "GET ") and HasSuffix(name, "health")', true],
    ['TrimPrefix(name, "GET ") == "/health" and TrimSuffix(name, "th") == "GET /heal"', true],
    ['Trim("  x  ") == "x" and Trim("--x-", "-") == "x"', true],
    ['Hex(attributes["bytes"]) == "dead"', true],
    ['Hex(1) == "0000000000000001"', true],
    ['TraceID("abababababababababababababababab") == trace_id', true],
    ['Nanoseconds(Duration("1h1m")) == 3660000000000 and Seconds(Duration("1.5s")) == 1.5', true],
    ['UnixNano(start_time) == 1000000000 and UnixNano(Unix(1)) == 1000000000', true],
  ];
  for (const [cond, want] of cases) assert.equal(ev(cond), want, cond);
});

test('converter runtime errors: Substring out of range, type errors from paths, Len of an int', () => {
  runtimeErr('Substring(name, 5, 100) == ""', /invalid range for substring function/);
  runtimeErr('Substring(name, 0, 0) == ""', /cannot be negative or zero/);
  runtimeErr('ToLowerCase(attributes["http.status"]) == ""', /expected string but got int64/);
  runtimeErr('Len(attributes["http.status"]) == 0', /Len: unsupported target type int64/);
  runtimeErr('Int(name) == 0', /strconv.ParseInt: parsing "GET \/health": invalid syntax/);
  runtimeErr('Hex(span_id) == ""', /unsupported type: pcommon.SpanID/);
  runtimeErr('TraceID(name) == nil', /could not decode ID: invalid length/);
  runtimeErr('IsMatch(name, attributes["nope"])', /expected string but got nil/);
  // A wrapped inner TypeError is not a TypeError for IsString: an error, not false.
  runtimeErr('IsString(ToLowerCase(attributes["http.status"]))', /error getting value/);
  // A converter in boolean position must return a bool.
  runtimeErr('Len(name)', /must be bool but got int64/);
});

test('compile errors: unknown function, path, enum, context; editors; argument count and types', () => {
  compileErr('Foo(name)', /undefined function "Foo"/);
  compileErr('ParseJSON(name) == nil', /converter "ParseJSON" is not supported .* docs\/ottl\.md/);
  compileErr('IsRootSpan()', /IsRootSpan/, RESOURCE_CONTEXT);
  compileErr('attributes["x"] == set(name)', /converter names must start with an uppercase letter but got 'set'/);
  compileErr('nme == "x"', /segment "nme" from path "nme" is not a valid path for the span context \(valid: trace_id, span_id/);
  compileErr('status.cod == 1', /segment "cod"/);
  compileErr('status == nil', /path "status" is not supported by spansieve \(readable: status.code, status.message/);
  compileErr('name.foo == 1', /the path section "foo"/);
  compileErr('name["x"] == 1', /the keys indexing "name" were not used/);
  compileErr('kind == SPAN_KIND_SERVR', /enum symbol, SPAN_KIND_SERVR, not found/);
  compileErr('attributes["x"] == SPAN_KIND_SERVER', /does not provide Enum support/, RESOURCE_CONTEXT);
  compileErr('IsMatch(name)', /incorrect number of arguments. Expected: 2 Received: 1/);
  compileErr('Substring(name, 1, 2, true, 4) == ""', /Expected: 4 Received: 5/);
  compileErr('IsMatch(name, "(")', /is not a valid pattern/);
  compileErr('IsMatch(name, 1)', /invalid argument at position 1: expected string but got int64/);
  compileErr('Concat(name, "") == ""', /must be a list of type StringLikeGetter/);
  compileErr('Substring(name, 0, 1, utf8_safe = 1) == ""', /invalid argument at position 3: must be a bool/);
  compileErr('IsMatch(target = name, "x")', /unnamed argument used after named argument/);
  compileErr('IsMatch(name, patern = "x")', /no such parameter: patern/);
  compileErr('TraceID(0x0102) == trace_id', /invalid length/);
  compileErr('spanevent.name == "x"', /context "spanevent"|not a valid path/);
  compileErr('attributes["a"] == 1 and', /condition has invalid syntax/);
  // Named arguments bind by name, in any order.
  assert.equal(ev('IsMatch(pattern = "^GET", target = name)'), true);
  assert.equal(ev('Substring(name, 0, 3, utf8_safe = true) == "GET"'), true);
});

test('path contexts: legacy/prepend read context-less paths in the own context; explicit requires a context', () => {
  assert.equal(compileCondition('status.code == 2', SPAN_CONTEXT, { mode: 'prepend' }).eval(ITEM), true);
  assert.throws(() => compileCondition('status.code == 2', SPAN_CONTEXT, { mode: 'explicit' }), /context "status" from path "status.code" is not valid/);
  assert.throws(() => compileCondition('name == "x"', SPAN_CONTEXT, { mode: 'explicit' }), /missing context name for path "name", possibly valid options are: "span.name"/);
  assert.equal(compileCondition('span.status.code == 2', SPAN_CONTEXT, { mode: 'explicit' }).eval(ITEM), true);
  assert.equal(compileCondition('spanevent.name == "exception" and span.name == "GET /health"', SPAN_EVENT_CONTEXT, { mode: 'explicit' }).eval(ITEM), true);
});

test('paths used: a caller tells resource-only conditions from span-level ones', () => {
  const r = compileCondition('resource.attributes["service.name"] == "a" or IsMatch(resource.attributes["x"], "y")', SPAN_CONTEXT);
  assert.deepEqual([...r.contexts], ['resource']);
  assert.deepEqual(r.paths, [{ context: 'resource', path: 'attributes' }, { context: 'resource', path: 'attributes' }]);
  const s = compileCondition('resource.attributes["a"] == "b" and attributes["url.path"] == "/x" and status.code == 2', SPAN_CONTEXT);
  assert.deepEqual([...s.contexts].sort(), ['resource', 'span']);
  assert.deepEqual(s.paths.map((p) => p.path), ['attributes', 'attributes', 'status.code']);
  // A context's own converter reads its data without a path: it counts.
  const root = compileCondition('IsRootSpan() and resource.attributes["a"] == "b"', SPAN_CONTEXT);
  assert.deepEqual([...root.contexts].sort(), ['resource', 'span']);
  assert.deepEqual([...compileCondition('HasAttrKeyOnDatapoint("k")', METRIC_CONTEXT).contexts], ['metric']);
});

test('context inference as trace_conditions / metric_conditions do it', () => {
  const T = TRACE_CONTEXTS as Record<string, OttlContext<never>>;
  const M = METRIC_CONTEXTS as Record<string, OttlContext<never>>;
  assert.equal(inferContext('resource.attributes["a"] == "b"', T), 'resource');
  assert.equal(inferContext('resource.attributes["a"] == "b" and span.name == "x"', T), 'span');
  assert.equal(inferContext('spanevent.name == "x" or resource.attributes["a"] == nil', T), 'spanevent');
  assert.equal(inferContext('scope.name == "x"', T), 'scope');
  assert.equal(inferContext('metric.name == "x" and datapoint.attributes["a"] == 1', M), 'datapoint');
  // A function the inferred context lacks moves the condition to the lowest context that has it.
  assert.equal(inferContext('resource.attributes["a"] == "b" and IsRootSpan()', T), 'span');
  assert.equal(inferContext('resource.attributes["a"] == "b" and HasAttrOnDatapoint("k", "v")', M), 'metric');
  // An enum the context lacks, likewise.
  assert.equal(inferContext('resource.attributes["k"] == SPAN_KIND_SERVER', T), 'spanevent');
  // No context name on any path: not inferable.
  assert.throws(() => inferContext('attributes["a"] == "b"', T), /unable to infer context/);
  assert.throws(() => inferContext('status.code == 1', T), /context "status" inferred .* is not a supported context/);
  // The Collector's quirk: instrumentation_scope is in the priority list but no context is registered under it.
  assert.throws(() => inferContext('instrumentation_scope.name == "x"', T), /is not a supported context/);
  assert.throws(() => inferContext('span.name == "x" and HasAttrOnDatapoint("k", "v")', T), /does not support the function "HasAttrOnDatapoint"/);
});

test('metric and datapoint contexts: type enums, HasAttrOnDatapoint (first point with the key decides)', () => {
  const m: TelemetryItem = {
    resource: {},
    metric: {
      name: 'http.server.duration', type: 3, aggregationTemporality: 2,
      dataPoints: [{ attributes: attrs({ code: 200n }) }, { attributes: attrs({ code: '200', route: '/a' }) }],
    },
    dataPoint: { attributes: attrs({ route: '/a' }), count: 3n, sum: 1.5 },
  };
  assert.equal(ev('type == METRIC_DATA_TYPE_HISTOGRAM and aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE', METRIC_CONTEXT, m), true);
  assert.equal(ev('HasAttrKeyOnDatapoint("route")', METRIC_CONTEXT, m), true);
  assert.equal(ev('HasAttrOnDatapoint("code", "200")', METRIC_CONTEXT, m), false, 'the first point has code as an int, which reads as ""');
  assert.equal(ev('HasAttrOnDatapoint("route", "/a")', METRIC_CONTEXT, m), true);
  assert.equal(ev('count == 3 and sum > 1.0 and value_double == nil and metric.name == "http.server.duration"', DATAPOINT_CONTEXT, m), true);
  assert.equal(ev('attributes["route"] == "/a" and flags == FLAG_NONE', DATAPOINT_CONTEXT, m), true);
  const empty: TelemetryItem = { resource: {}, metric: { type: 0 } };
  assert.throws(() => compileCondition('HasAttrKeyOnDatapoint("x")', METRIC_CONTEXT).eval(empty), /unknown metric type/);
});

test('ConditionSequence: any true drops; error_mode propagate throws, ignore reports and goes on, silent goes on', () => {
  const conds = compileConditions(['Substring(name, 50, 1) == "x"', 'name == "GET /health"'], SPAN_CONTEXT);
  const seen: string[] = [];
  assert.throws(() => new ConditionSequence(conds, 'propagate').eval(ITEM), /failed to eval condition: Substring\(name, 50, 1\) == "x", invalid range/);
  assert.equal(new ConditionSequence(conds, 'ignore', (e) => seen.push(e.message)).eval(ITEM), true);
  assert.equal(seen.length, 1);
  assert.equal(new ConditionSequence(conds, 'silent', () => seen.push('x')).eval(ITEM), true);
  assert.equal(seen.length, 1, 'silent does not report');
  // An erroring condition counts as false: with nothing else matching, the item is kept.
  const only = compileConditions(['Substring(name, 50, 1) == "x"'], SPAN_CONTEXT);
  assert.equal(new ConditionSequence(only, 'ignore').eval(ITEM), false);
  // A match before the erroring condition short-circuits: no error even under propagate.
  const first = compileConditions(['name == "GET /health"', 'Substring(name, 50, 1) == "x"'], SPAN_CONTEXT);
  assert.equal(new ConditionSequence(first, 'propagate').eval(ITEM), true);
});

test('compileConditions reports every bad condition at once', () => {
  assert.throws(
    () => compileConditions(['name == "a"', 'Foo()', 'nme == 1'], SPAN_CONTEXT),
    (e: unknown) => e instanceof OttlCompileError && /"Foo\(\)": undefined function/.test(e.message) && /"nme == 1"/.test(e.message),
  );
});

test('ContainsValue over a long literal list of strings (set lookup) keeps the comparison rules', () => {
  const ids = Array.from({ length: 50 }, (_, i) => `"host-${i}:1"`);
  const list = `[${[...ids, '"host-a:100"', '"100"'].join(', ')}]`;
  assert.equal(ev(`ContainsValue(${list}, resource.attributes["service.instance.id"])`), true);
  assert.equal(ev(`ContainsValue(${list}, resource.attributes["pid"])`), false, 'int 100 is not "100"');
  assert.equal(ev(`ContainsValue(${list}, resource.attributes["nope"])`), false);
  assert.equal(ev(`ContainsValue(${list}, "host-7:1")`), true);
});
