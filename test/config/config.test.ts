import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { DEFAULT_CONFIG, loadConfig, parseArgs } from '../../src/cli';
import { parseConfigText } from '../../src/config/load';
import { ConfigIssues, ConfigValidationError } from '../../src/config/reader';
import { buildServiceConfig, type ServiceConfig } from '../../src/config/service-config';
import type { FilterConfig } from '../../src/processors/filter/filter';
import type { AttrValue } from '../../src/pdata/attributes';

const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli.js');
const REPO_DEFAULT_CONFIG = path.resolve(__dirname, '..', '..', '..', 'config', 'default.yaml');

/**
 * Parses and validates YAML text as the CLI's loadConfig does (problems reading the document -
 * YAML, environment references - stop there); returns the config or every error.
 */
function validate(text: string, env: NodeJS.ProcessEnv = {}): { config?: ServiceConfig; errors: string[] } {
  const issues = new ConfigIssues();
  const doc = parseConfigText(text, 'test.yaml', issues, env);
  if (issues.errors.length > 0) return { errors: issues.errors };
  try {
    return { config: buildServiceConfig(doc, issues), errors: [] };
  } catch (err) {
    if (err instanceof ConfigValidationError) return { errors: [...err.errors] };
    throw err;
  }
}

/**
 * Every expected [path, message fragment] is reported exactly once, as `path: ...fragment...`,
 * and nothing else is reported.
 */
function assertErrors(errors: readonly string[], expected: readonly (readonly [string, string])[]): void {
  const left = [...errors];
  for (const [at, fragment] of expected) {
    const i = left.findIndex((e) => e.startsWith(`${at}: `) && e.includes(fragment));
    assert.ok(i >= 0, `no error "${at}: ...${fragment}..." in:\n  ${errors.join('\n  ')}`);
    left.splice(i, 1);
  }
  assert.deepEqual(left, [], 'unexpected errors');
}

const VALID = `
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
processors:
  filter/obi:
    keep:
      - service.instance.id: "web-1:4242"
      - pid: 4243
exporters:
  otlp/jaeger:
    endpoint: 127.0.0.1:14317
    tls:
      insecure: true
  debug: {}
extensions:
  health_check: {}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [filter/obi]
      exporters: [otlp/jaeger, debug]
`;

const INVALID = `
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1
        max_recv_msg_sze: 4
      http:
        endpoint: 0.0.0.0:99999
  kafka: {}
  1otlp: {}
processors:
  filter/obi:
    keep:
      - service.instance.id: "/(unclosed/"
      - pid: 0
    dorp: []
  batch: {}
  filter/bad id: {}
exporters:
  otlp/jaeger:
    endpoint: jaeger:4317
    timeout: 5 seconds
    retry_on_failure:
      initial_interval: 1x
      max_intervall: 1s
    tls:
      insecure: maybe
  debug:
    verbosity: loud
connectors:
  forward/one_sided: {}
extensions:
  health_check:
    endpoint: localhost
service:
  extensions: [health_check, pprof]
  pipelines:
    traces:
      receivers: [otlp, zipkin]
      processors: [filter/obi, batch]
      exporters: [otlp/jaeger, otlp/missing, forward/one_sided]
    logs:
      receivers: [otlp]
      exporters: [debug]
    traces/bad/name:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      address: 127.0.0.1:88888
    logs:
      level: verbose
  tracing: {}
unknown_top: {}
`;

const INVALID_ERRORS = [
  ['unknown_top', 'unknown key'],
  ['receivers::otlp::protocols::grpc::max_recv_msg_sze', 'unknown key'],
  ['receivers::otlp::protocols::grpc::endpoint', 'expected host:port (e.g. 127.0.0.1:4317), got "127.0.0.1"'],
  ['receivers::otlp::protocols::http::endpoint', 'expected host:port (e.g. 127.0.0.1:4317), got "0.0.0.0:99999"'],
  ['receivers::kafka', 'unknown receiver type "kafka"'],
  ['receivers::1otlp', 'invalid component id "1otlp"'],
  ['processors::filter/obi::dorp', 'unknown key'],
  ['processors::filter/obi::keep[0]::service.instance.id', 'invalid regular expression /(unclosed/'],
  ['processors::filter/obi::keep[1]::pid', 'pid must be a positive integer, got 0'],
  ['processors::batch', 'unknown processor type "batch"'],
  ['processors::filter/bad id', 'invalid component id "filter/bad id"'],
  ['exporters::otlp/jaeger::timeout', 'expected a duration such as "500ms", "5s" or "1m", got "5 seconds"'],
  ['exporters::otlp/jaeger::retry_on_failure::initial_interval', 'expected a duration such as "500ms", "5s" or "1m", got "1x"'],
  ['exporters::otlp/jaeger::retry_on_failure::max_intervall', 'unknown key'],
  ['exporters::otlp/jaeger::tls::insecure', 'expected true or false, got "maybe"'],
  ['exporters::debug::verbosity', 'must be one of basic, normal, detailed, got "loud"'],
  ['extensions::health_check::endpoint', 'expected host:port (e.g. 127.0.0.1:4317), got "localhost"'],
  ['service::extensions[1]', 'references extension "pprof" which is not configured'],
  ['service::pipelines::traces::receivers[1]', 'references receiver "zipkin" which is not configured'],
  ['service::pipelines::traces::processors[1]', 'references processor "batch" which is not configured'],
  ['service::pipelines::traces::exporters[1]', 'references exporter "otlp/missing" which is not configured'],
  ['service::pipelines::logs', 'logs pipelines are not supported'],
  ['service::pipelines::traces/bad/name', 'invalid pipeline id "traces/bad/name"'],
  ['service::pipelines', 'connector "forward/one_sided" must be used as an exporter in one pipeline and as a receiver in another'],
  ['service::telemetry::metrics::address', 'expected host:port (e.g. 127.0.0.1:4317), got "127.0.0.1:88888"'],
  ['service::telemetry::logs::level', 'must be one of debug, info, warn, error, got "verbose"'],
  ['service::tracing', 'unknown key'],
] as const;

void describe('config validation', () => {
  void test('a valid config builds its pipelines', () => {
    const { config, errors } = validate(VALID);
    assert.deepEqual(errors, []);
    assert.deepEqual(
      config!.pipelines.map((p) => [p.id, p.signal, p.receivers, p.processors, p.exporters]),
      [['traces', 'traces', ['otlp'], ['filter/obi'], ['otlp/jaeger', 'debug']]],
    );
    assert.deepEqual(config!.serviceExtensions, ['health_check']);
    const filter = config!.processors.get('filter/obi')!.config as FilterConfig;
    assert.equal(filter.keep!.selectors.length, 2);
  });

  void test('every kind of error is reported with its path, all at once', () => {
    const { config, errors } = validate(INVALID);
    assert.equal(config, undefined);
    assertErrors(errors, INVALID_ERRORS);
    assert.equal(errors.length, INVALID_ERRORS.length);
  });

  void test('an empty document needs a pipeline; a non-mapping document is refused', () => {
    assertErrors(validate('').errors, [['service::pipelines', 'at least one pipeline is required']]);
    assertErrors(validate('- a\n- b\n').errors, [['test.yaml', 'the top level must be a mapping']]);
    assertErrors(validate('a: 1\na: 2\n').errors, [['test.yaml', 'invalid YAML']]);
  });

  void test('pipelines need receivers and exporters, and components that support their signal', () => {
    const { errors } = validate(`
receivers:
  otlp: {}
processors:
  filter: {}
exporters:
  debug: {}
service:
  pipelines:
    traces:
      processors: [filter, filter]
      exporters: []
    metrics/x:
      receivers: [otlp, otlp]
      exporters: [debug]
`);
    assertErrors(errors, [
      ['service::pipelines::traces::receivers', 'a pipeline needs at least one receiver'],
      ['service::pipelines::traces::exporters', 'a pipeline needs at least one exporter'],
      ['service::pipelines::traces::processors[1]', '"filter" is listed twice'],
      ['service::pipelines::metrics/x::receivers[1]', '"otlp" is listed twice'],
    ]);
  });

  void test('connector misuse: one side only, as a processor, across signals, in a cycle', () => {
    const oneSide = validate(`
receivers: { otlp: {} }
exporters: { debug: {} }
connectors: { forward: {} }
service:
  pipelines:
    traces:
      receivers: [forward]
      exporters: [debug]
    traces/2:
      receivers: [otlp]
      processors: [forward]
      exporters: [debug]
`);
    assertErrors(oneSide.errors, [
      ['service::pipelines', 'connector "forward" must be used as an exporter in one pipeline and as a receiver in another'],
      ['service::pipelines::traces/2::processors[0]', 'references processor "forward" which is not configured'],
    ]);

    const crossSignal = validate(`
receivers: { otlp: {} }
exporters: { debug: {} }
connectors: { forward: {} }
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [forward]
    metrics:
      receivers: [forward]
      exporters: [debug]
`);
    assertErrors(crossSignal.errors, [['service::pipelines', 'connector "forward" cannot connect traces (pipeline traces) to metrics (pipeline metrics)']]);

    const cycle = validate(`
receivers: { otlp: {} }
exporters: { debug: {} }
connectors: { forward/a: {}, forward/b: {} }
service:
  pipelines:
    traces/1:
      receivers: [otlp, forward/b]
      exporters: [forward/a]
    traces/2:
      receivers: [forward/a]
      exporters: [forward/b, debug]
`);
    assertErrors(cycle.errors, [['service::pipelines', 'pipelines form a cycle through connectors']]);

    const fine = validate(`
receivers: { otlp: {} }
exporters: { debug: {} }
connectors: { forward: {} }
service:
  pipelines:
    traces/in:
      receivers: [otlp]
      exporters: [forward]
    traces/out:
      receivers: [forward]
      exporters: [debug]
`);
    assert.deepEqual(fine.errors, []);
    assert.deepEqual(
      fine.config!.pipelines.map((p) => p.id),
      ['traces/in', 'traces/out'],
    );
  });

  void test('config/default.yaml in the repository validates', () => {
    const text = fs.readFileSync(REPO_DEFAULT_CONFIG, 'utf8');
    const { config, errors } = validate(text, {});
    assert.deepEqual(errors, []);
    assert.deepEqual(
      config!.pipelines.map((p) => [p.id, p.exporters]),
      [
        ['traces', ['otlp/jaeger', 'debug', 'spanmetrics', 'servicegraph']],
        ['metrics', ['prometheus']],
        ['metrics/traces', ['prometheus']],
      ],
    );
    // No client can run it out of memory on the default config: memory_limiter first where data comes in.
    assert.deepEqual(
      config!.pipelines.filter((p) => p.receivers.includes('otlp')).map((p) => p.processors[0]),
      ['memory_limiter', 'memory_limiter'],
    );
    const filter = config!.processors.get('filter/obi')!.config as FilterConfig;
    assert.equal(filter.keep, undefined);
    assert.notEqual(filter.drop.match(new Map<string, AttrValue>([['service.name', 'jaeger-all-in-one']])), undefined);
    assert.equal(filter.drop.match(new Map<string, AttrValue>([['service.name', 'backend']])), undefined);
    assert.equal(path.resolve(DEFAULT_CONFIG), REPO_DEFAULT_CONFIG);
    // Through the CLI's own loader as well (the real environment).
    assert.deepEqual(
      loadConfig(parseArgs(['validate'])).pipelines.map((p) => p.id),
      ['traces', 'metrics', 'metrics/traces'],
    );
  });
});

void describe('environment expansion', () => {
  const TEXT = `
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: \${env:GRPC_ENDPOINT}
        max_recv_msg_size_mib: \${env:MIB}
      http:
        endpoint: "\${env:HTTP_HOST:-127.0.0.1}:\${env:HTTP_PORT:-4318}"
exporters:
  otlp/jaeger:
    endpoint: \${env:JAEGER_HOST}:\${env:JAEGER_PORT}
    headers:
      authorization: \${env:TOKEN}
      x-quoted: \${env:QUOTED}
      x-literal: "$\${env:NOT_EXPANDED}"
      x-price: "costs $$5 or \${env:PRICE:-6}"
      x-empty-default: \${env:EMPTY:-fallback}
    tls:
      insecure: \${env:INSECURE}
    sending_queue:
      queue_size: \${env:QUEUE}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp/jaeger]
`;
  const ENV = {
    GRPC_ENDPOINT: '0.0.0.0:5317',
    MIB: '16',
    JAEGER_HOST: 'jaeger',
    JAEGER_PORT: '14317',
    TOKEN: 'Bearer abc #1',
    QUOTED: '"quoted"',
    INSECURE: 'true',
    QUEUE: '500',
    EMPTY: '',
  };

  void test('${env:X}, ${env:X:-default}, $$ escapes and typed whole values', () => {
    const issues = new ConfigIssues();
    const doc = parseConfigText(TEXT, 'test.yaml', issues, ENV) as {
      receivers: { otlp: { protocols: { grpc: Record<string, unknown>; http: Record<string, unknown> } } };
      exporters: { 'otlp/jaeger': { endpoint: unknown; headers: Record<string, unknown>; tls: { insecure: unknown }; sending_queue: { queue_size: unknown } } };
    };
    assert.deepEqual(issues.errors, []);
    assert.equal(doc.receivers.otlp.protocols.grpc.endpoint, '0.0.0.0:5317');
    assert.equal(doc.receivers.otlp.protocols.grpc.max_recv_msg_size_mib, 16);
    assert.equal(doc.receivers.otlp.protocols.http.endpoint, '127.0.0.1:4318');
    const jaeger = doc.exporters['otlp/jaeger'];
    assert.equal(jaeger.endpoint, 'jaeger:14317');
    assert.deepEqual(jaeger.headers, {
      authorization: 'Bearer abc #1',
      'x-quoted': '"quoted"',
      'x-literal': '${env:NOT_EXPANDED}',
      'x-price': 'costs $5 or 6',
      'x-empty-default': 'fallback',
    });
    assert.equal(jaeger.tls.insecure, true);
    assert.equal(jaeger.sending_queue.queue_size, 500);

    // A whole-value port takes its YAML type; inside a longer string it stays text.
    const ports = parseConfigText('a:\n  port: ${env:PORT}\n  text: "p${env:PORT}"\n  list: ["${env:PORT}"]\n', 't', new ConfigIssues(), { PORT: '4317' });
    assert.deepEqual(ports, { a: { port: 4317, text: 'p4317', list: [4317] } });

    const { config, errors } = validate(TEXT, ENV);
    assert.deepEqual(errors, []);
    assert.equal((config!.exporters.get('otlp/jaeger')!.config as { endpoint: string }).endpoint, 'jaeger:14317');
  });

  void test('an unset variable without a default is an error naming its path', () => {
    const { errors } = validate(TEXT, { ...ENV, GRPC_ENDPOINT: undefined, TOKEN: undefined });
    assertErrors(errors, [
      ['receivers::otlp::protocols::grpc::endpoint', 'environment variable GRPC_ENDPOINT is not set (write ${env:GRPC_ENDPOINT:-default} to give a default)'],
      ['exporters::otlp/jaeger::headers::authorization', 'environment variable TOKEN is not set'],
    ]);
    const inList = validate('service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: ["${env:EXPORTER}"]\nreceivers: {otlp: {}}\n');
    assertErrors(inList.errors, [
      ['service::pipelines::traces::exporters[0]', 'environment variable EXPORTER is not set'],
    ]);
    // Through the CLI: exit 1, the variable and its path on stderr.
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-env-')), 'env.yaml');
    fs.writeFileSync(file, TEXT);
    const env: NodeJS.ProcessEnv = { ...process.env, ...ENV };
    delete env.TOKEN;
    const result = spawnSync(process.execPath, [CLI, 'validate', '--config', file], { encoding: 'utf8', env, timeout: 30_000 });
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
    assert.equal(result.status, 1);
    assert.equal(
      result.stderr,
      `spansieve: ${file} is invalid:\n  exporters::otlp/jaeger::headers::authorization: environment variable TOKEN is not set (write \${env:TOKEN:-default} to give a default)\n`,
    );
  });
});

void describe('the command line', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-config-test-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  function write(name: string, text: string): string {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  }

  function run(...args: string[]) {
    const env = { ...process.env };
    for (const name of Object.keys(env)) if (name.startsWith('SPANSIEVE_')) delete env[name];
    const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env, timeout: 30_000 });
    return { code: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  void test('validate: an invalid config exits 1 and lists every error with its path', () => {
    const file = write('invalid.yaml', INVALID);
    const { code, stdout, stderr } = run('validate', '--config', file);
    assert.equal(code, 1);
    assert.equal(stdout, '');
    const lines = stderr.trimEnd().split('\n');
    assert.equal(lines[0], `spansieve: ${file} is invalid:`);
    const reported = lines.slice(1).map((line) => {
      assert.ok(line.startsWith('  '), line);
      return line.slice(2);
    });
    assertErrors(reported, INVALID_ERRORS);
  });

  void test('validate: a valid config exits 0', () => {
    const file = write('valid.yaml', VALID);
    const { code, stdout, stderr } = run('validate', '--config', file);
    assert.equal(stderr, '');
    assert.equal(code, 0);
    assert.equal(stdout, `${file} is valid: pipelines traces\n`);
  });

  void test('validate: the repository default config, named and implied', () => {
    assert.equal(run('validate', '--config', REPO_DEFAULT_CONFIG).code, 0);
    const implied = run('validate');
    assert.equal(implied.code, 0);
    assert.match(implied.stdout, /default\.yaml is valid: pipelines traces, metrics, metrics\/traces\n$/);
  });

  void test('validate: a missing file and a file-less config with a bad endpoint exit 1', () => {
    const missing = run('validate', '--config', path.join(dir, 'nope.yaml'));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nope\.yaml: cannot read the config file: ENOENT/);
    const badEndpoint = run('validate', '--keep', 'web-1:4242', '--jaeger', 'jaeger-without-port');
    assert.equal(badEndpoint.code, 1);
    assert.match(badEndpoint.stderr, /^spansieve: command-line config is invalid:\n {2}exporters::otlp\/jaeger::endpoint: expected host:port/);
    const good = run('validate', '--keep', 'web-1:4242,4243', '--jaeger', '127.0.0.1:14317');
    assert.equal(good.code, 0);
    assert.equal(good.stdout, 'command-line config is valid: pipelines traces\n');
  });

  void test('usage errors exit 2 with the usage text', () => {
    const cases: [string[], string][] = [
      [['validate', '--bogus'], 'spansieve: unknown argument "--bogus"'],
      [['validate', '--config'], 'spansieve: --config needs a value'],
      [['--keep', '4242'], 'spansieve: the file-less form needs --jaeger HOST:PORT'],
      [['--config', 'x.yaml', '--keep', '4242', '--jaeger', '127.0.0.1:1'], 'spansieve: --config cannot be combined with'],
      [['--keep', '--jaeger', '127.0.0.1:1'], 'spansieve: --keep needs a value'],
    ];
    for (const [args, message] of cases) {
      const { code, stdout, stderr } = run(...args);
      assert.equal(code, 2, args.join(' '));
      assert.equal(stdout, '');
      assert.ok(stderr.startsWith(message), `${args.join(' ')}: ${stderr}`);
      assert.match(stderr, /\nUsage:\n/);
    }
  });
});

void describe('the file-less form', () => {
  void test('--keep and --jaeger build a traces pipeline with a three-selector keep list', () => {
    const args = parseArgs(['--keep', 'web-1:4242,4243,edge-*:*', '--jaeger', '127.0.0.1:14317']);
    assert.equal(args.command, 'run');
    assert.equal(args.configFile, undefined);
    const config = loadConfig(args);
    assert.deepEqual(
      config.pipelines.map((p) => [p.id, p.receivers, p.processors, p.exporters]),
      [['traces', ['otlp'], ['filter/cli'], ['otlp/jaeger']]],
    );
    assert.equal((config.exporters.get('otlp/jaeger')!.config as { endpoint: string }).endpoint, '127.0.0.1:14317');
    const filter = config.processors.get('filter/cli')!.config as FilterConfig;
    assert.deepEqual(
      filter.keep!.selectors.map((s) => s.source),
      [{ 'service.instance.id': 'web-1:4242' }, { pid: 4243 }, { 'service.instance.id': 'edge-*:*' }],
    );
    assert.equal(filter.drop.selectors.length, 0);
    const matchOf = (id: string) => {
      const found = filter.keep!.match(new Map<string, AttrValue>([['service.instance.id', id]]));
      return found === undefined ? -1 : filter.keep!.selectors.indexOf(found);
    };
    assert.equal(matchOf('web-1:4242'), 0);
    assert.equal(matchOf('db-9:4243'), 1);
    assert.equal(matchOf('db-9:14243'), -1);
    assert.equal(matchOf('edge-3:77'), 2);
    assert.equal(matchOf('shop.pod.4243'), -1);
  });
});

void describe('exporters that cannot serve a signal they are wired to', () => {
  void test('otlphttp with only traces_endpoint in a metrics pipeline is a config error naming the key to set', () => {
    const base = `
receivers: { otlp: {} }
exporters: { otlphttp: { traces_endpoint: "http://127.0.0.1:4318/v1/traces" } }
service:
  pipelines:
    traces: { receivers: [otlp], exporters: [otlphttp] }
`;
    assert.deepEqual(validate(base).errors, []);
    const withMetrics = `${base}    metrics: { receivers: [otlp], exporters: [otlphttp] }\n`;
    assert.deepEqual(validate(withMetrics).errors, [
      'service::pipelines::metrics::exporters[0]: exporter "otlphttp" cannot export metrics: no URL for it (set endpoint, or metrics_endpoint)',
    ]);
  });
});
