import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { SPANSIEVE_NODE_FLAGS } from '../../src/service/node-flags';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const flags = SPANSIEVE_NODE_FLAGS.join(' ');
const LAUNCHER = path.join(ROOT, 'bin', 'spansieve');

void describe('node flags', () => {
  void test('npm start, the package bin and the Dockerfile run the launcher, which passes the same flags as the cli shebang', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; bin: Record<string, string> };
    assert.equal(pkg.scripts.start, 'bin/spansieve');
    assert.equal(pkg.bin.spansieve, 'bin/spansieve');
    const launcher = fs.readFileSync(LAUNCHER, 'utf8');
    assert.match(launcher, new RegExp(`^exec node ${flags} \\$heap_flag "\\$cli" "\\$@"$`, 'm'));
    const shebang = fs.readFileSync(path.join(ROOT, 'src', 'cli.ts'), 'utf8').split('\n')[0];
    assert.equal(shebang, `#!/usr/bin/env -S node ${flags}`);
    const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    assert.match(dockerfile, /^ENTRYPOINT \["bin\/spansieve"\]$/m);
  });

  void test('the built bin runs with them through its shebang', () => {
    const cli = path.join(ROOT, 'dist', 'src', 'cli.js');
    assert.equal(fs.readFileSync(cli, 'utf8').split('\n')[0], `#!/usr/bin/env -S node ${flags}`);
    // Run through env as the kernel would, with a script that prints its node flags.
    const probe = path.join(ROOT, 'dist', 'node-flags-probe.js');
    fs.writeFileSync(probe, `${fs.readFileSync(cli, 'utf8').split('\n')[0]}\nprocess.stdout.write(JSON.stringify(process.execArgv));\n`, { mode: 0o755 });
    try {
      assert.deepEqual(JSON.parse(execFileSync(probe, { encoding: 'utf8' })), SPANSIEVE_NODE_FLAGS);
    } finally {
      fs.rmSync(probe, { force: true });
    }
  });

  void describe('bin/spansieve and V8\'s heap limit', () => {
    const config = (limiter: boolean) => `
receivers:
  otlp:
    protocols:
      http: { endpoint: 127.0.0.1:0 }
processors:
${limiter ? '  memory_limiter: { check_interval: 1s, limit_mib: 150, spike_limit_mib: 30 }\n' : ''}  filter: { keep: [{ service.instance.id: "*" }] }
exporters:
  debug: {}
service:
  telemetry: { metrics: { address: 127.0.0.1:0 } }
  pipelines:
    traces: { receivers: [otlp], processors: [${limiter ? 'memory_limiter, ' : ''}filter], exporters: [debug] }
`;
    const withConfig = (limiter: boolean, run: (file: string) => Promise<void> | void) => async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-launcher-'));
      const file = path.join(dir, 'config.yaml');
      fs.writeFileSync(file, config(limiter));
      try {
        await run(file);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    };
    const nodeFlags = (file: string, env: NodeJS.ProcessEnv = process.env) =>
      execFileSync(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli.js'), 'node-flags', '--config', file], { encoding: 'utf8', env });

    void test('node-flags prints the limit of a memory_limiter, nothing without one, with one already given or for an invalid config', withConfig(true, (file) => {
      assert.equal(nodeFlags(file), '--max-old-space-size=150\n');
      assert.equal(nodeFlags(file, { ...process.env, NODE_OPTIONS: '--max-old-space-size=300' }), '');
      fs.writeFileSync(file, config(false));
      assert.equal(nodeFlags(file), '');
      fs.writeFileSync(file, 'receivers: [');
      assert.equal(nodeFlags(file), '');
    }));

    void test('the launcher passes validate, instances and help straight to the cli', withConfig(true, (file) => {
      assert.match(execFileSync(LAUNCHER, ['validate', '--config', file], { encoding: 'utf8' }), /is valid/);
      fs.writeFileSync(file, 'receivers: [');
      assert.throws(() => execFileSync(LAUNCHER, ['validate', '--config', file], { stdio: 'pipe' }), (err: { status?: number }) => err.status === 1);
      assert.match(execFileSync(LAUNCHER, ['help'], { encoding: 'utf8' }), /spansieve validate \[--config FILE\]/);
    }));

    void test('the launcher execs one node process, same pid, with the flag', withConfig(true, async (file) => {
      const child = spawn(LAUNCHER, ['--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      try {
        let out = '';
        child.stdout.setEncoding('utf8');
        child.stderr.resume();
        await new Promise<void>((resolve, reject) => {
          child.stdout.on('data', (chunk: string) => {
            out += chunk;
            if (out.includes('spansieve is ready')) resolve();
          });
          void exited.then((code) => reject(new Error(`exited with ${code} before ready: ${out}`)));
        });
        const argv = fs.readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
        assert.equal(path.basename(argv[0]!), 'node');
        assert.deepEqual(argv.slice(1, 1 + SPANSIEVE_NODE_FLAGS.length), [...SPANSIEVE_NODE_FLAGS]);
        assert.ok(argv.includes('--max-old-space-size=150'), argv.join(' '));
        assert.ok(argv.some((a) => a.endsWith(path.join('dist', 'src', 'cli.js'))), argv.join(' '));
        // Exactly one node child of ours: the probe run is gone, the shell replaced itself.
        assert.ok(!out.includes('cannot restart itself'), out);
      } finally {
        child.kill('SIGTERM');
        assert.equal(await exited, 0);
      }
    }));
  });
});
