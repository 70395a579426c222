import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

// Imports point down the layers (docs/architecture.md, "Layers"): a module may import its own
// layer or a lower one, never a higher one, and a component never imports another component.
// This reads the source tree, so it runs from dist/test/architecture against ../../../src.

const ROOT = path.resolve(__dirname, '..', '..', '..');
const SRC = path.join(ROOT, 'src');

const KINDS = ['receivers', 'processors', 'exporters', 'connectors', 'extensions'];

// Lower number = lower layer. Paths are relative to src/, with '/' separators.
function layerOf(rel: string): number | undefined {
  if (rel.startsWith('types/') || rel.startsWith('util/')) return 0;
  if (rel.startsWith('pdata/')) return 1;
  if (rel === 'config/reader.ts' || rel === 'config/tls.ts' || rel.startsWith('ottl/')) return 2;
  if (rel.startsWith('component/')) return 3;
  if (KINDS.some((k) => rel.startsWith(`${k}/`))) return 4;
  if (rel === 'components.ts') return 5;
  if (rel.startsWith('config/') || rel.startsWith('pipeline/')) return 6;
  if (rel.startsWith('service/')) return 7;
  if (rel === 'cli.ts') return 8;
  return undefined;
}

// Shared helpers: code several components of one kind use, as the Collector's exporterhelper is
// its own package. A helper is a file directly in a kind's folder (exporters/otlp-common.ts),
// anything under the kind's internal/ folder (exporters/internal/prometheus/), or a folder listed
// here. Components may import helpers of their own kind; helpers may import helpers of their own
// kind; nothing in layer 4 imports another component, and no helper imports a component.
const HELPER_FOLDERS = new Set(['exporters/exporterhelper']);

// Beyond pointing down: the service runs any component through the contracts in component/ and
// knows none of them (issue 17). It may not import components, the factory list, or anything else
// not listed here, so a live-editable component or a new exporter never needs a change in service/.
const ONLY_IMPORTS: Record<string, readonly string[]> = {
  'service/': ['service/', 'component/', 'config/', 'pipeline/', 'pdata/', 'util/', 'types/'],
};

function restrictedImport(from: string, to: string): boolean {
  return Object.entries(ONLY_IMPORTS).some(([folder, allowed]) => from.startsWith(folder) && !allowed.some((prefix) => to.startsWith(prefix)));
}

/** 'exporters/otlp' for a component, 'helper:exporters/exporterhelper' for a helper. */
function unitOf(rel: string): string {
  const parts = rel.split('/');
  const kind = parts[0] ?? '';
  if (parts.length === 2) return `helper:${kind}/${parts[1]}`;
  const folder = `${kind}/${parts[1] ?? ''}`;
  return HELPER_FOLDERS.has(folder) || parts[1] === 'internal' ? `helper:${folder}` : folder;
}

function sideViolation(from: string, to: string): boolean {
  const a = unitOf(from);
  const b = unitOf(to);
  if (a === b) return false;
  const kindOf = (u: string) => u.replace(/^helper:/, '').split('/')[0];
  return !(b.startsWith('helper:') && kindOf(a) === kindOf(b));
}

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return tsFiles(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

function resolve(fromFile: string, spec: string): string {
  const base = path.join(path.dirname(fromFile), spec);
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts'), base]) {
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return candidate;
  }
  throw new Error(`${path.relative(ROOT, fromFile)}: cannot resolve import '${spec}'`);
}

// Relative module specifiers in import/export ... from '...', import('...'), require('...').
const SPEC = /(?:\bfrom\s+|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)'(\.{1,2}\/[^']*)'/gm;

function findViolations(): { violations: string[]; unlayered: string[] } {
  const violations: string[] = [];
  const unlayered: string[] = [];
  for (const file of tsFiles(SRC)) {
    const rel = path.relative(SRC, file).split(path.sep).join('/');
    const from = layerOf(rel);
    if (from === undefined) {
      unlayered.push(`src/${rel}`);
      continue;
    }
    for (const m of fs.readFileSync(file, 'utf8').matchAll(SPEC)) {
      const target = resolve(file, m[1] ?? '');
      const targetRel = path.relative(SRC, target).split(path.sep).join('/');
      if (targetRel.startsWith('..')) continue; // outside src/ (package.json): not layered
      const to = layerOf(targetRel);
      if (to === undefined) continue; // reported as unlayered on its own
      const edge = `src/${rel} -> src/${targetRel}`;
      if (to > from) violations.push(`UP ${edge}`);
      else if (restrictedImport(rel, targetRel)) violations.push(`NOT ALLOWED ${edge}`);
      else if (from === 4 && to === 4 && sideViolation(rel, targetRel)) violations.push(`SIDE ${edge}`);
    }
  }
  return { violations: [...new Set(violations)].sort(), unlayered };
}

void test('every src/ module has a layer', () => {
  assert.deepEqual(findViolations().unlayered, [], 'add these to layerOf() here and to docs/architecture.md');
});

void test('imports point down the layers; components do not import each other; service/ imports no component', () => {
  assert.deepEqual(findViolations().violations, [], 'imports that run up a layer, sideways into another component, or from service/ to anything but its allowed folders');
});

void test('the checker sees a violation (self-check)', () => {
  assert.equal(sideViolation('exporters/otlp/otlp-exporter.ts', 'receivers/otlp/grpc-server.ts'), true);
  assert.equal(sideViolation('exporters/otlp/otlp-exporter.ts', 'exporters/otlp-common.ts'), false);
  assert.equal(sideViolation('exporters/otlp-common.ts', 'exporters/exporterhelper/exporterhelper.ts'), false);
  assert.equal(sideViolation('exporters/exporterhelper/x.ts', 'extensions/filestorage/file-storage.ts'), true);
  assert.equal(sideViolation('connectors/spanmetrics/a.ts', 'exporters/otlp-common.ts'), true);
  assert.equal(sideViolation('exporters/prometheus/p.ts', 'exporters/internal/prometheus/translation.ts'), false);
  assert.equal(sideViolation('exporters/internal/prometheus/t.ts', 'exporters/prometheus/prometheus-exporter.ts'), true);
  assert.ok((layerOf('service/inventory.ts') ?? 0) > (layerOf('component/component.ts') ?? 0));
  assert.equal(restrictedImport('service/service.ts', 'processors/filter/filter.ts'), true);
  assert.equal(restrictedImport('service/inventory.ts', 'processors/filter/selectors.ts'), true);
  assert.equal(restrictedImport('service/service.ts', 'components.ts'), true);
  assert.equal(restrictedImport('service/service.ts', 'extensions/admin/admin.ts'), true);
  assert.equal(restrictedImport('service/service.ts', 'component/live.ts'), false);
  assert.equal(restrictedImport('service/supervisor.ts', 'config/service-config.ts'), false);
});
