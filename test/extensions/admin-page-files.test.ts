import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import type { ServiceControl } from '../../src/component/component';
import { AdminExtension, PAGE_DIR, PAGE_FILES } from '../../src/extensions/admin/admin';
import { freePorts } from '../helpers/ports';

// The admin page is served from the build (scripts/build-page.js puts it beside admin.js in dist/),
// byte for byte, each file with its content type; the browser test runs it.

const control: ServiceControl = {
  instances: () => [],
  sampling: () => ({ services: [], policies: [], recentDropped: [], maxRecentDropped: 100 }),
  liveSettings: () => new Map([['filter/obi', { drop: [] }]]),
  setLive: () => [],
  saveLive: async () => undefined,
  dryRun: () => ({ errors: [], instances: [] }),
};

void describe('admin page files', () => {
  let admin: AdminExtension;
  let base: string;

  before(async () => {
    const [port] = await freePorts(1);
    base = `http://127.0.0.1:${port}`;
    admin = new AdminExtension({ endpoint: `127.0.0.1:${port}`, token: undefined }, pino({ level: 'silent' }));
    await admin.start({ reportStatus: () => undefined, control });
  });

  after(async () => {
    await admin.shutdown();
  });

  void test('the page comes from the built output, not from the sources', () => {
    const compiled = path.join('dist', 'src', 'extensions', 'admin', 'page');
    assert.ok(PAGE_DIR.endsWith(compiled), PAGE_DIR);
    assert.ok(fs.existsSync(path.join(PAGE_DIR, 'app.js')), 'app.js compiled from app.ts');
    assert.equal(fs.existsSync(path.join(PAGE_DIR, 'app.ts')), false, 'no TypeScript is served');
  });

  void test('GET / is the built index.html, and the files it names load with their content types', async () => {
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const html = await page.text();
    assert.equal(html, fs.readFileSync(path.join(PAGE_DIR, 'index.html'), 'utf8'));
    assert.equal(await (await fetch(`${base}/index.html`)).text(), html);

    const named = [...html.matchAll(/\b(?:src|href)="(?!data:)([^"]+)"/g)].map((m) => m[1]!).sort();
    assert.deepEqual(named, ['app.js', 'page.css']);
    const types: Record<string, RegExp> = { 'app.js': /^text\/javascript\b/, 'page.css': /^text\/css\b/ };
    for (const name of named) {
      const res = await fetch(new URL(name, page.url));
      assert.equal(res.status, 200, name);
      assert.match(res.headers.get('content-type') ?? '', types[name]!, name);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(await res.text(), fs.readFileSync(path.join(PAGE_DIR, name), 'utf8'), name);
    }
    assert.deepEqual([...new Set([...PAGE_FILES.values()].map((f) => f.file))].sort(), ['app.js', 'index.html', 'page.css']);
  });

  void test('only those files: anything else outside /api is 404, and the page files answer GET only', async () => {
    for (const target of ['/app.ts', '/tsconfig.json', '/page/app.js', '/../admin.js', '/%2e%2e/admin.js']) {
      const res = await fetch(`${base}${target}`);
      assert.equal(res.status, 404, target);
      await res.arrayBuffer();
    }
    const post = await fetch(`${base}/app.js`, { method: 'POST' });
    assert.equal(post.status, 405);
    await post.arrayBuffer();
  });
});
