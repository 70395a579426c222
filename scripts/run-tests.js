#!/usr/bin/env node
// `npm test`: installs the real peers the tests need (cached), then runs every compiled
// *.test.js under dist/test with node's test runner. Extra arguments filter test files by a
// substring of their path: `npm test -- filter` runs every test file whose path contains "filter".
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function testFiles(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return testFiles(full);
    return entry.name.endsWith('.test.js') ? [full] : [];
  });
}

const filters = process.argv.slice(2);
const files = testFiles(path.join(root, 'dist', 'test'))
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error('run-tests: no test files found (did the build run?)');
  process.exit(1);
}

// Jaeger, the reference Collector and helm are Go builds, run concurrently (with the apt installs
// and the stand-in base image for podman) and cached: on a machine that has them this returns at once.
const install = spawnSync('bash', [path.join(root, 'scripts', 'install-peers.sh'), 'jaeger', 'otelcol', 'helm', 'prometheus', 'chromium', 'podman', 'curl'], {
  stdio: ['ignore', 'pipe', 'inherit'],
  encoding: 'utf8',
});
if (install.status !== 0) {
  console.error('run-tests: installing the test peers failed');
  process.exit(1);
}
const binDir = install.stdout.trim().split('\n').pop();

// Prometheus comes from the distribution's package (install-peers.sh prometheus): on PATH.
function onPath(name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const full = path.join(dir, name);
    if (dir && fs.existsSync(full)) return full;
  }
  return name;
}

// The spec report goes to the terminal; a TAP copy is read back for the closing summary line.
const tapFile = path.join(require('node:os').tmpdir(), `spansieve-tests-${process.pid}.tap`);
const reporters = ['--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=tap', `--test-reporter-destination=${tapFile}`];
// A test that hangs (a lost wake-up, a window never given back) fails after 10 min instead of
// holding the run until CI's own limit.
const result = spawnSync(process.execPath, ['--test', '--test-timeout=600000', ...reporters, ...files], {
  stdio: 'inherit',
  cwd: root,
  env: {
    ...process.env,
    SPANSIEVE_JAEGER_BIN: path.join(binDir, 'jaeger'),
    SPANSIEVE_OTELCOL_BIN: process.env.SPANSIEVE_OTELCOL_BIN || path.join(binDir, 'otelcol'),
    SPANSIEVE_PROMETHEUS_BIN: process.env.SPANSIEVE_PROMETHEUS_BIN || onPath('prometheus'),
    SPANSIEVE_CHROMIUM_BIN: process.env.SPANSIEVE_CHROMIUM_BIN || '/usr/bin/chromium',
    SPANSIEVE_HELM_BIN: path.join(binDir, 'helm'),
    SPANSIEVE_K8S_VALIDATE_BIN: path.join(binDir, 'k8s-validate'),
  },
});
let summary = '';
try {
  const tap = fs.readFileSync(tapFile, 'utf8');
  const count = (name) => Number((new RegExp(`^# ${name} (\\d+)$`, 'm').exec(tap) || [])[1] || 0);
  summary = `${count('pass')} passed, ${count('fail') + count('cancelled')} failed, ${count('skipped')} skipped`;
  fs.rmSync(tapFile, { force: true });
} catch {
  summary = '';
}
if (summary) console.log(`\ntests: ${summary}`);
process.exit(result.status ?? 1);
