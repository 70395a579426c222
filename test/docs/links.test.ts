import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { allFactories } from '../../src/components';

// The docs stay navigable: every relative link in README.md and docs/*.md names a file that
// exists, every #anchor a heading (GitHub's slugs) or an explicit <a id>, and every component in
// src/components.ts has a README row linking a reference page with an options table, and is named
// in docs/configuration.md's file shape. Reads the
// source tree from dist/test/docs, no network.

const ROOT = path.resolve(__dirname, '..', '..', '..');

function docFiles(): string[] {
  const docs = fs.readdirSync(path.join(ROOT, 'docs')).filter((name) => name.endsWith('.md'));
  return ['README.md', ...docs.map((name) => `docs/${name}`)];
}

/** The text outside fenced code blocks, line by line (links and headings there are not rendered). */
export function proseLines(markdown: string): string[] {
  const out: string[] = [];
  let fence: string | undefined;
  for (const line of markdown.split('\n')) {
    const opener = /^\s*(`{3,}|~{3,})/.exec(line);
    if (opener) {
      if (fence === undefined) fence = opener[1]!.slice(0, 3);
      else if (opener[1]!.startsWith(fence)) fence = undefined;
      out.push('');
      continue;
    }
    out.push(fence === undefined ? line : '');
  }
  return out;
}

/** GitHub's heading anchor: lower case, punctuation removed (keeping '-' and '_'), spaces to '-'. */
export function slug(heading: string): string {
  return heading
    .replace(/<[^>]*>/g, '')
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\p{M} _-]/gu, '')
    .replace(/ /g, '-');
}

export function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of proseLines(markdown)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading) {
      const base = slug(heading[1]!);
      const count = seen.get(base) ?? 0;
      seen.set(base, count + 1);
      anchors.add(count === 0 ? base : `${base}-${count}`);
    }
    for (const m of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(m[1]!);
  }
  return anchors;
}

/** Inline links [text](target), without images' and code spans' false hits. */
export function linksOf(markdown: string): { line: number; target: string }[] {
  const links: { line: number; target: string }[] = [];
  proseLines(markdown).forEach((line, index) => {
    const prose = line.replace(/`[^`]*`/g, '``');
    for (const m of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      links.push({ line: index + 1, target: m[1]! });
    }
  });
  return links;
}

/** Problems with the relative links of one file, as "file:line: target: why". */
export function brokenLinks(
  file: string,
  read: (rel: string) => string | undefined,
  exists: (rel: string) => boolean = (rel) => fs.existsSync(path.join(ROOT, rel)),
): string[] {
  const text = read(file);
  if (text === undefined) return [`${file}: missing`];
  const problems: string[] = [];
  for (const { line, target } of linksOf(text)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
    const [rawPath, anchor] = target.split('#', 2) as [string, string | undefined];
    const rel = rawPath === '' ? file : path.posix.normalize(path.posix.join(path.posix.dirname(file), decodeURI(rawPath)));
    const where = `${file}:${line}: ${target}`;
    if (rel.startsWith('..')) {
      problems.push(`${where}: points outside the repository`);
      continue;
    }
    if (!exists(rel)) {
      problems.push(`${where}: no such file`);
      continue;
    }
    if (anchor === undefined || anchor === '') continue;
    if (!rel.endsWith('.md')) continue; // #L12 on source files: GitHub's line anchors
    const targetText = read(rel);
    if (targetText === undefined || !anchorsOf(targetText).has(anchor)) problems.push(`${where}: no such anchor`);
  }
  return problems;
}

function readRepo(rel: string): string | undefined {
  try {
    return fs.readFileSync(path.join(ROOT, rel), 'utf8');
  } catch {
    return undefined;
  }
}

test('GitHub slugs: the shapes the docs use', () => {
  assert.equal(slug('Which hop is slow'), 'which-hop-is-slow');
  assert.equal(slug('`target_info` and what it reveals'), 'target_info-and-what-it-reveals');
  assert.equal(slug('Persistent queue (file_storage)'), 'persistent-queue-file_storage');
  assert.equal(slug('Traces → metrics: `spanmetrics`'), 'traces--metrics-spanmetrics');
  const anchors = anchorsOf('# A\n## Options\n```\n# not a heading\n```\n## Options\n<a id="x"></a>\n');
  assert.deepEqual([...anchors].sort(), ['a', 'options', 'options-1', 'x']);
});

test('the checker reports a missing file and a missing anchor', () => {
  const files: Record<string, string> = {
    'docs/a.md': '# Title\n[ok](#title) [bad](#nope) [gone](missing.md) [b](b.md#sub) [c](b.md#absent)\n`[code](not-a-link.md)`\n',
    'docs/b.md': '## Sub\n',
  };
  const problems = brokenLinks('docs/a.md', (rel) => files[rel], (rel) => rel in files);
  assert.ok(problems.some((p) => p.includes('#nope') && p.endsWith('no such anchor')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('missing.md') && p.endsWith('no such file')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('b.md#absent') && p.endsWith('no such anchor')), problems.join('\n'));
  assert.ok(!problems.some((p) => p.includes('#title') || p.includes('b.md#sub')), problems.join('\n'));
  assert.ok(!problems.some((p) => p.includes('not-a-link')), problems.join('\n'));
});

test('every relative link and #anchor in README.md and docs/*.md resolves', () => {
  const problems = docFiles().flatMap((file) => brokenLinks(file, readRepo));
  assert.deepEqual(problems, []);
});

test('every component has a README row linking its reference page, with an options table', () => {
  const readme = readRepo('README.md')!;
  const configuration = readRepo('docs/configuration.md')!;
  const problems: string[] = [];
  for (const factory of allFactories()) {
    const row = readme
      .split('\n')
      .find((line) => line.startsWith(`| ${factory.kind} | \`${factory.type}\``));
    if (row === undefined) {
      problems.push(`${factory.kind} ${factory.type}: no row in README.md's component table`);
      continue;
    }
    const page = /\]\((docs\/[^)#]+\.md)\)/.exec(row)?.[1];
    const text = page === undefined ? undefined : readRepo(page);
    if (page === undefined || text === undefined) {
      problems.push(`${factory.kind} ${factory.type}: README row links no existing docs page`);
      continue;
    }
    // docs/configuration.md's file shape names the types of each kind: `receivers: ... (types: otlp)`.
    const types = new RegExp(`^${factory.kind}s:.*\\(types: ([^)]*)\\)`, 'm').exec(configuration)?.[1]?.split(/,\s*/) ?? [];
    if (!types.includes(factory.type)) problems.push(`docs/configuration.md: ${factory.kind}s' types do not list ${factory.type}`);
    const hasTable = /^\| key \| type \| default \| meaning \|$/m.test(text);
    const saysNone = /^## Options\s*\n\s*None\./m.test(text);
    if (!hasTable && !saysNone) problems.push(`${page}: no options table (| key | type | default | meaning |)`);
  }
  assert.deepEqual(problems, []);
});
