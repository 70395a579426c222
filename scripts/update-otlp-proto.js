#!/usr/bin/env node
// Writes proto/opentelemetry/... from a checkout of open-telemetry/opentelemetry-proto at a release
// tag: the published definitions with comments removed (test/pdata/schema.test.ts then checks the
// scanner's tables against them). Usage: node scripts/update-otlp-proto.js <checkout> <tag>
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const FILES = [
  'opentelemetry/proto/common/v1/common.proto',
  'opentelemetry/proto/resource/v1/resource.proto',
  'opentelemetry/proto/trace/v1/trace.proto',
  'opentelemetry/proto/metrics/v1/metrics.proto',
  'opentelemetry/proto/collector/trace/v1/trace_service.proto',
  'opentelemetry/proto/collector/metrics/v1/metrics_service.proto',
];

const [checkout, tag] = process.argv.slice(2);
if (!checkout || !tag) {
  console.error('usage: node scripts/update-otlp-proto.js <opentelemetry-proto checkout> <tag, e.g. v1.11.0>');
  process.exit(2);
}

function definitionsOnly(source) {
  const lines = source
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .split('\n')
    .map((line) => line.replace(/\s*\/\/.*$/, '').trimEnd());
  // No blank line directly inside an opening brace or before a closing one, at most one elsewhere.
  const kept = lines.filter((line, i) => line !== '' || (lines[i - 1] !== '' && !/\{$/.test(lines[i - 1] ?? '') && !/^\s*\}/.test(lines[i + 1] ?? '')));
  return `${kept.join('\n').trim()}\n`;
}

const root = path.resolve(__dirname, '..', 'proto');
for (const file of FILES) {
  const source = execFileSync('git', ['-C', checkout, 'show', `${tag}:${file}`], { encoding: 'utf8' });
  const header = `// opentelemetry-proto ${tag}, ${file}: the published definitions, comments removed\n// (scripts/update-otlp-proto.js).\n`;
  fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
  fs.writeFileSync(path.join(root, file), header + definitionsOnly(source));
}
console.log(`wrote ${FILES.length} files from opentelemetry-proto ${tag}`);
