import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import * as YAML from 'yaml';
import { readConfigFile } from '../../src/config/load';
import { ConfigIssues, ConfigValidationError } from '../../src/config/reader';
import { buildServiceConfig } from '../../src/config/service-config';
import { PAGE_DIR, PAGE_FILES } from '../../src/extensions/admin/admin';
import type { InstanceView } from '../../src/component/component';
import { Service } from '../../src/service/service';
import { encodeTraces, hostInstance, obiResourceSpans, obiSpan, obiTraceRequest, type ObiInstance } from '../helpers/obi';
import { freePorts, waitFor } from '../helpers/ports';
import { startService } from '../helpers/service';
import { GrpcSink } from '../helpers/sink';

// The admin page end to end in Debian's headless Chromium (driven by playwright-core): it lists
// the instances that arrived, a click drops one through the admin API, and that instance's spans
// stop reaching the exporter. Screenshots land in test-artifacts/.

const CHROMIUM = process.env.SPANSIEVE_CHROMIUM_BIN || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const UI_TIMEOUT_MS = 10_000;

function repoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${__dirname}`);
    dir = parent;
  }
  return dir;
}
const ARTIFACTS = path.join(repoRoot(), 'test-artifacts');

interface Browser {
  readonly context: BrowserContext;
  readonly userDataDir: string;
  /** Uncaught exceptions and console errors of every page, for a final check. */
  readonly pageErrors: string[];
}

/** Chromium with a fresh profile directory (playwright takes it as launchPersistentContext's first argument). */
async function launchBrowser(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM}: run scripts/install-peers.sh chromium (or set SPANSIEVE_CHROMIUM_BIN)`);
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 1440, height: 900 },
  });
  // A disabled button or a missing row fails the test in seconds, not after playwright's 30 s default.
  context.setDefaultTimeout(UI_TIMEOUT_MS);
  const pageErrors: string[] = [];
  context.on('page', (page) => watchPage(page, pageErrors));
  for (const page of context.pages()) watchPage(page, pageErrors);
  return { context, userDataDir, pageErrors };
}

function watchPage(page: Page, errors: string[]): void {
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('console', (message) => {
    // Chromium logs every API answer >= 400 as a failed resource load; the tests provoke 400, 401 and 409 on purpose.
    if (message.type() === 'error' && !/Failed to load resource: .*status of (400|401|409)/.test(message.text())) errors.push(`console: ${message.text()}`);
  });
}

async function closeBrowser(browser: Browser | undefined): Promise<void> {
  if (!browser) return;
  await browser.context.close().catch(() => undefined);
  fs.rmSync(browser.userDataDir, { recursive: true, force: true });
}

async function screenshot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

async function sendTraces(httpPort: number, instances: readonly ObiInstance[], spansPerInstance: number): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-protobuf' },
    body: obiTraceRequest(instances, spansPerInstance),
  });
  assert.equal(res.status, 200, await res.text());
}

async function getJson(url: string, token?: string): Promise<unknown> {
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text);
}

const row = (id: string) => `tr.instance[data-instance="${id}"]`;

/** Waits until the page shows the instance with the given kept state ("yes", "no", "unknown"). */
async function waitForRow(page: Page, id: string, kept: 'yes' | 'no' | 'unknown'): Promise<void> {
  await page.waitForSelector(`${row(id)}[data-kept="${kept}"]`, { timeout: UI_TIMEOUT_MS });
}

async function rowCells(page: Page, id: string): Promise<string[]> {
  return (await page.locator(`${row(id)} > *`).allTextContents()).map((text) => text.trim());
}

async function statusText(page: Page): Promise<string> {
  return (await page.textContent('#status')) ?? '';
}

describe('admin page markup', () => {
  test('it loads nothing from elsewhere: its own script and style only', () => {
    const html = fs.readFileSync(path.join(PAGE_DIR, 'index.html'), 'utf8');
    const css = fs.readFileSync(path.join(PAGE_DIR, 'page.css'), 'utf8');
    const references = [...html.matchAll(/\b(?:src|href)="([^"]*)"/g)].map((m) => m[1]!);
    assert.deepEqual(references.sort(), ['app.js', 'data:,', 'page.css']);
    for (const name of references.filter((r) => r !== 'data:,')) assert.ok(PAGE_FILES.has(`/${name}`), `${name} is served`);
    assert.match(html, /<script type="module" src="app.js"><\/script>/);
    assert.doesNotMatch(`${html}${css}`, /url\(|@import|https?:\/\//);
  });
});

describe('admin page in headless Chromium', () => {
  const sink = new GrpcSink();
  let service: Service | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let httpPort: number;
  let adminUrl: string;

  const web1 = hostInstance('web-1', 1001, 'backend');
  const web1b = hostInstance('web-1', 1002, 'backend');
  const web2 = hostInstance('web-2', 2001, 'frontend');
  const all = [web1, web1b, web2];

  before(async () => {
    await sink.start();
    let adminPort: number;
    [httpPort, adminPort] = await freePorts(2);
    adminUrl = `http://127.0.0.1:${adminPort}`;
    service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: {
        // No keep list: everything is kept until something is dropped.
        'filter/obi': {},
        // A second filter processor, so the page offers a choice (and must default to the first).
        'filter/metrics': { drop: [{ 'service.name': 'noisy' }] },
      },
      exporters: {
        otlp: { endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true }, sending_queue: { enabled: false } },
      },
      extensions: { admin: { endpoint: adminUrl.slice('http://'.length) } },
      service: {
        extensions: ['admin'],
        pipelines: {
          traces: { receivers: ['otlp'], processors: ['filter/obi'], exporters: ['otlp'] },
          metrics: { receivers: ['otlp'], processors: ['filter/metrics'], exporters: ['otlp'] },
        },
        telemetry: { metrics: { level: 'none' } },
      },
    });
    browser = await launchBrowser();
    page = await browser.context.newPage();
  });

  after(async () => {
    await closeBrowser(browser);
    await service?.shutdown();
    await sink.stop();
  });

  test('lists the instances that arrived, all kept', async () => {
    await sendTraces(httpPort, all, 3);
    assert.deepEqual(new Set(sink.instanceIds()), new Set(all.map((i) => i.instanceId)), 'first round: everything is kept');

    await page.goto(`${adminUrl}/`);
    for (const instance of all) await waitForRow(page, instance.instanceId, 'yes');
    assert.equal(await page.locator('tr.instance').count(), 3);

    const cells = await rowCells(page, 'web-1:1002');
    assert.equal(cells[0], 'web-1:1002');
    assert.equal(cells[1], 'backend');
    assert.equal(cells[2], 'web-1');
    assert.equal(cells[3], '1002');
    assert.match(cells[4]!, /kept/);
    assert.match(cells[5]!, /no keep list: kept/);
    assert.ok(Number(cells[6]) > 0, `spans/s ${cells[6]}`);

    // Grouped by service: a header row per service with its own buttons.
    const groupHeaders = (await page.locator('tr.group-row th').allTextContents()).map((text) => text.trim());
    assert.deepEqual(groupHeaders, ['backend2 instances, 2 kept', 'frontend1 instance, 1 kept']);
    assert.equal(await page.getByRole('button', { name: 'Drop service frontend', exact: true }).isEnabled(), true);

    // Two filter processors: a choice, defaulting to the first.
    assert.deepEqual(await page.locator('#filter option').allTextContents(), ['filter/obi', 'filter/metrics']);
    assert.equal(await page.inputValue('#filter'), 'filter/obi');
    assert.match((await page.textContent('#keep-list')) ?? '', /absent/);

    // Keeping an instance that is already kept (no keep list, nothing dropped) has nothing to do.
    assert.equal(await page.getByRole('button', { name: 'Keep web-1:1002', exact: true }).isDisabled(), true);

    console.log(`screenshot: ${await screenshot(page, 'admin-page-before-drop.png')}`);
  });

  test('a click on Drop drops the instance in the page and in the filter lists', async () => {
    await page.getByRole('button', { name: 'Drop web-1:1002', exact: true }).click();
    await waitForRow(page, 'web-1:1002', 'no');
    await waitForRow(page, 'web-1:1001', 'yes');
    await waitForRow(page, 'web-2:2001', 'yes');
    assert.match(await statusText(page), /Drop instance web-1:1002 \(filter\/obi\): added \{"service\.instance\.id":"web-1:1002"\} to drop/);
    // The server's dry run of the new lists shows at once. Until the page polls the inventory again
    // (which the PUT re-decided) it notes that the change applies from the next request.
    const keptCell = (await rowCells(page, 'web-1:1002'))[4]!;
    if (/next request/.test(keptCell)) assert.match(keptCell, /dropped.*from the next request \(last data: kept\)/s);
    else assert.equal(keptCell, '✕ dropped', 'a poll came in between: the inventory shows the new decision');

    const filters = (await getJson(`${adminUrl}/api/v1/filters`)) as Record<string, { keep?: unknown; drop: unknown }>;
    assert.deepEqual(filters['filter/obi'], { drop: [{ 'service.instance.id': 'web-1:1002' }] });
    assert.deepEqual(filters['filter/metrics'], { drop: [{ 'service.name': 'noisy' }] }, 'the other filter processor is untouched');
    assert.match((await page.textContent('#drop-list')) ?? '', /\{"service\.instance\.id":"web-1:1002"\}/);
    assert.equal(await page.getByRole('button', { name: 'Drop web-1:1002', exact: true }).isDisabled(), true);
    assert.equal(await page.getByRole('button', { name: 'Keep web-1:1002', exact: true }).isEnabled(), true);

    console.log(`screenshot: ${await screenshot(page, 'admin-page-after-drop.png')}`);
  });

  test('Drop service and Keep service change the lists for that service', async () => {
    await page.getByRole('button', { name: 'Drop service frontend', exact: true }).click();
    await waitForRow(page, 'web-2:2001', 'no');
    let filters = (await getJson(`${adminUrl}/api/v1/filters/filter%2Fobi`)) as { keep?: unknown; drop: unknown };
    assert.deepEqual(filters, { drop: [{ 'service.instance.id': 'web-1:1002' }, { 'service.name': 'frontend' }] });
    assert.match(await statusText(page), /Drop service frontend \(filter\/obi\): added \{"service\.name":"frontend"\} to drop/);

    await page.getByRole('button', { name: 'Keep service frontend', exact: true }).click();
    await waitForRow(page, 'web-2:2001', 'yes');
    filters = (await getJson(`${adminUrl}/api/v1/filters/filter%2Fobi`)) as { keep?: unknown; drop: unknown };
    assert.deepEqual(filters, { drop: [{ 'service.instance.id': 'web-1:1002' }] }, 'no keep list is added: without one everything not dropped is kept');
    assert.match(await statusText(page), /Keep service frontend \(filter\/obi\): removed \{"service\.name":"frontend"\} from drop/);
    await waitForRow(page, 'web-1:1002', 'no');
  });

  test("the dropped instance's spans stop reaching the exporter", async () => {
    const before = sink.requests.length;
    await sendTraces(httpPort, all, 3);
    // sending_queue is disabled: the export finished before the receiver answered.
    const secondRound = sink.requests.slice(before);
    assert.ok(secondRound.length > 0, 'the exporter sent the second round');
    const ids: string[] = [];
    let spans = 0;
    for (const request of secondRound) {
      const probe = new GrpcSink();
      probe.requests.push(request);
      ids.push(...probe.instanceIds());
      spans += probe.spanCount();
    }
    assert.deepEqual(new Set(ids), new Set(['web-1:1001', 'web-2:2001']));
    assert.equal(spans, 6);

    // With new data, the server's own decision shows: dropped, by the exact selector, nothing pending.
    await waitFor('the inventory to record the drop', async () => {
      const instances = (await getJson(`${adminUrl}/api/v1/instances`)) as InstanceView[];
      return instances.find((i) => i.id === 'web-1:1002')?.kept === false;
    });
    await waitFor(
      'the page to show the decision of the new data',
      async () => {
        const cells = await rowCells(page, 'web-1:1002');
        return !/next request/.test(cells[4]!) && /dropped by: service\.instance\.id="web-1:1002"/.test(cells[5]!);
      },
      UI_TIMEOUT_MS,
    );
  });

  test("a refused change shows the server's errors verbatim and changes nothing", async () => {
    const invalid = { keep: [{}], drop: [{ 'service.name': '/[unclosed/' }] };
    const res = await fetch(`${adminUrl}/api/v1/filters/filter%2Fobi`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(invalid) });
    assert.equal(res.status, 400);
    const refused = (await res.json()) as { error: string; errors: string[] };
    assert.ok(refused.errors.length >= 2, JSON.stringify(refused));

    await page.click('#editor summary');
    await page.fill('#lists-json', JSON.stringify(invalid));
    await page.getByRole('button', { name: 'Apply', exact: true }).click();
    await page.waitForSelector('#errors:not([hidden]) li', { timeout: UI_TIMEOUT_MS });
    assert.deepEqual(await page.locator('#errors li').allTextContents(), refused.errors);
    assert.match((await page.textContent('#errors strong')) ?? '', new RegExp(`HTTP 400: ${refused.error.replace(/[/()]/g, '.')}`));
    assert.match(await statusText(page), /refused; the running lists are unchanged/);
    assert.deepEqual(await getJson(`${adminUrl}/api/v1/filters/filter%2Fobi`), { drop: [{ 'service.instance.id': 'web-1:1002' }] });
    console.log(`screenshot: ${await screenshot(page, 'admin-page-refused-change.png')}`);
  });

  test('Save to config file shows why it cannot save without a config file (409)', async () => {
    await page.getByRole('button', { name: 'Save to config file' }).click();
    await waitFor('the save to be refused', async () => /Not saved/.test(await statusText(page)), UI_TIMEOUT_MS);
    assert.match(await statusText(page), /Not saved: spansieve was started without a config file/);
    assert.match((await page.textContent('#errors')) ?? '', /HTTP 409/);
  });

  test('the page raised no script errors', () => {
    assert.deepEqual(browser?.pageErrors, []);
  });
});

describe('admin page and server agree on what lists decide', () => {
  // The page shows the server's dry run, of the lists being edited (the JSON editor's preview) and
  // of the running lists (the table): both are what the filter then does to each instance's data. The cases include where the
  // page's former matcher of its own differed from the server: RE2's \s is ASCII only (a browser's
  // is Unicode), and a glob's literal half of a surrogate pair (the server compares UTF-16 units).
  // A glob's ? is one character, a surrogate pair included, on both.
  const sink = new GrpcSink();
  let service: Service | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let httpPort: number;
  let adminUrl: string;

  const astral = hostInstance('edge-\u{1F600}', 5001, 'svc-\u{1F600}');
  const plain = hostInstance('edge-a', 5002, 'svc-a');
  const edge = hostInstance('edge-17', 5003, 'edge');
  const web = hostInstance('web-9', 6001, 'web');
  const spaced = hostInstance('edge-b', 5004, 'svc\u00a0b');
  const all = [astral, plain, edge, web, spaced];

  before(async () => {
    await sink.start();
    let adminPort: number;
    [httpPort, adminPort] = await freePorts(2);
    adminUrl = `http://127.0.0.1:${adminPort}`;
    service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: { 'filter/obi': {} },
      exporters: { otlp: { endpoint: `127.0.0.1:${sink.port}`, tls: { insecure: true }, sending_queue: { enabled: false } } },
      extensions: { admin: { endpoint: adminUrl.slice('http://'.length) } },
      service: {
        extensions: ['admin'],
        pipelines: { traces: { receivers: ['otlp'], processors: ['filter/obi'], exporters: ['otlp'] } },
        telemetry: { metrics: { level: 'none' } },
      },
    });
    browser = await launchBrowser();
    page = await browser.context.newPage();
    await sendTraces(httpPort, all, 1);
    await page.goto(`${adminUrl}/`);
    for (const instance of all) await waitForRow(page, instance.instanceId, 'yes');
    await page.click('#editor summary');
  });

  after(async () => {
    await closeBrowser(browser);
    await service?.shutdown();
    await sink.stop();
  });

  /** The Kept column per instance (true: kept). */
  async function shownInTable(): Promise<Map<string, boolean>> {
    const shown = new Map<string, boolean>();
    for (const instance of all) {
      const kept = await page.getAttribute(row(instance.instanceId), 'data-kept');
      assert.ok(kept === 'yes' || kept === 'no', `${instance.instanceId}: ${kept}`);
      shown.set(instance.instanceId, kept === 'yes');
    }
    return shown;
  }

  /**
   * Types lists into the JSON editor and reads its preview (the table's decisions with the changes it
   * lists), then applies them and reads the table. True: kept.
   */
  async function editInPage(lists: unknown, shot?: string): Promise<{ preview: Map<string, boolean>; applied: Map<string, boolean> }> {
    const text = JSON.stringify(lists);
    await page.fill('#lists-json', text);
    // The preview of exactly this text (the server was asked after the last keystroke).
    await waitFor('the preview of the edit', async () => (await page.getAttribute('#json-preview', 'data-for')) === text, UI_TIMEOUT_MS);
    const preview = await shownInTable();
    const summary = (await page.textContent('#json-preview p')) ?? '';
    assert.match(summary, /^If applied: \d+ of 5 instances kept/);
    for (const item of await page.locator('#json-preview li').all()) {
      const id = (await item.getAttribute('data-instance')) ?? '';
      const kept = await item.getAttribute('data-kept');
      assert.ok(preview.has(id) && (kept === 'yes' || kept === 'no'), `preview line ${await item.textContent()}`);
      preview.set(id, kept === 'yes');
    }
    assert.equal(Number(/(\d+) of/.exec(summary)![1]), [...preview.values()].filter(Boolean).length, summary);
    if (shot) console.log(`screenshot: ${await screenshot(page, shot)}`);

    await page.getByRole('button', { name: 'Apply', exact: true }).click();
    await waitFor('the page to apply the lists', async () => /Replaced the lists of filter\/obi/.test(await statusText(page)), UI_TIMEOUT_MS);
    await page.waitForSelector('#apply-json:not([disabled])', { timeout: UI_TIMEOUT_MS });
    assert.equal(await page.locator('#json-preview').isHidden(), true, 'no preview once applied');
    return { preview, applied: await shownInTable() };
  }

  /** What the filter does with the next data: the instances whose spans reach the exporter. */
  async function serverKeeps(): Promise<Map<string, boolean>> {
    const before = sink.requests.length;
    await sendTraces(httpPort, all, 1);
    const probe = new GrpcSink();
    probe.requests.push(...sink.requests.slice(before));
    const exported = new Set(probe.instanceIds());
    return new Map(all.map((i) => [i.instanceId, exported.has(i.instanceId)]));
  }

  const cases: [string, unknown, Record<string, boolean>][] = [
    ['a glob ? against an astral character', { drop: [{ 'service.name': 'svc-?' }] }, { 'edge-\u{1F600}:5001': false, 'edge-a:5002': false, 'edge-b:5004': true }],
    ['a glob ?? against an astral character', { keep: [{ 'host.name': 'edge-??' }] }, { 'edge-\u{1F600}:5001': false, 'edge-17:5003': true, 'edge-a:5002': false }],
    ['a glob with half a surrogate pair', { keep: [{ 'host.name': 'edge-\ud83d*' }] }, { 'edge-\u{1F600}:5001': true, 'edge-a:5002': false }],
    ['a regex \\s against a no-break space', { drop: [{ 'service.name': '/^svc\\sb$/' }] }, { 'edge-b:5004': true }],
    ['a regex, a pid and a drop glob', { keep: [{ 'service.name': '/^svc-.$/' }, { pid: 6001 }], drop: [{ 'host.name': 'edge-1*' }] }, { 'edge-a:5002': true, 'web-9:6001': true, 'edge-17:5003': false }],
  ];
  for (const [name, lists, expected] of cases) {
    test(`after an edit the page shows what the server then does: ${name}`, async () => {
      const { preview, applied } = await editInPage(lists, name.includes('regex, a pid') ? 'admin-page-edit-preview.png' : undefined);
      const done = await serverKeeps();
      assert.deepEqual(Object.fromEntries(preview), Object.fromEntries(done), `editor preview vs exported data for ${JSON.stringify(lists)}`);
      assert.deepEqual(Object.fromEntries(applied), Object.fromEntries(done), `page after Apply vs exported data for ${JSON.stringify(lists)}`);
      for (const [id, kept] of Object.entries(expected)) assert.equal(applied.get(id), kept, id);
    });
  }

  test('the page raised no script errors', () => {
    assert.deepEqual(browser?.pageErrors, []);
  });
});

describe('admin page with a bearer token and a config file', () => {
  const sink = new GrpcSink();
  const TOKEN = 'e2e-admin-token-5f1c';
  const TOKEN_ENV = 'SPANSIEVE_E2E_ADMIN_TOKEN';
  let service: Service | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let httpPort: number;
  let adminUrl: string;
  let configDir: string;
  let configFile: string;

  const backend = hostInstance('web-1', 3001, 'backend');
  const frontend = hostInstance('web-2', 4001, 'frontend');

  before(async () => {
    await sink.start();
    let adminPort: number;
    [httpPort, adminPort] = await freePorts(2);
    adminUrl = `http://127.0.0.1:${adminPort}`;
    process.env[TOKEN_ENV] = TOKEN;
    configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-admin-page-'));
    configFile = path.join(configDir, 'spansieve.yaml');
    fs.writeFileSync(
      configFile,
      [
        '# spansieve config for the admin page test',
        'receivers:',
        '  otlp:',
        '    protocols:',
        `      http: { endpoint: "127.0.0.1:${httpPort}" }`,
        'processors:',
        '  filter/obi:',
        '    keep:',
        '      - service.name: backend   # the backend only',
        'exporters:',
        '  otlp:',
        `    endpoint: "127.0.0.1:${sink.port}"`,
        '    tls: { insecure: true }',
        '    sending_queue: { enabled: false }',
        'extensions:',
        '  admin:',
        `    endpoint: "127.0.0.1:${adminPort}"`,
        `    token: "\${env:${TOKEN_ENV}}"`,
        'service:',
        '  extensions: [admin]',
        '  telemetry: { metrics: { level: none } }',
        '  pipelines:',
        '    traces: { receivers: [otlp], processors: [filter/obi], exporters: [otlp] }',
        '',
      ].join('\n'),
    );
    const issues = new ConfigIssues();
    const doc = readConfigFile(configFile, issues);
    const config = buildServiceConfig(doc, issues);
    if (issues.errors.length > 0) throw new ConfigValidationError(issues.errors);
    service = new Service(config, { logger: pino({ level: 'silent' }), configFile });
    await service.start();
    browser = await launchBrowser();
    page = await browser.context.newPage();
  });

  after(async () => {
    await closeBrowser(browser);
    await service?.shutdown();
    await sink.stop();
    delete process.env[TOKEN_ENV];
    if (configDir) fs.rmSync(configDir, { recursive: true, force: true });
  });

  test('asks for the token on 401, then shows the instances with it', async () => {
    await sendTraces(httpPort, [backend, frontend], 2);
    await page.goto(`${adminUrl}/`);
    await page.waitForSelector('#token[aria-invalid="true"]', { timeout: UI_TIMEOUT_MS });
    assert.match(await statusText(page), /needs a token/);
    assert.equal(await page.locator('tr.instance').count(), 0);

    await page.fill('#token', TOKEN);
    await page.getByRole('button', { name: 'Use token' }).click();
    await waitForRow(page, 'web-1:3001', 'yes');
    await waitForRow(page, 'web-2:4001', 'no');
    assert.match((await rowCells(page, 'web-2:4001'))[5]!, /matches no keep selector/);
    assert.equal(await page.evaluate<string | null>("sessionStorage.getItem('spansieve.adminToken')"), TOKEN);
    assert.equal(await page.getAttribute('#token', 'aria-invalid'), null);
  });

  test('Keep adds the instance to the keep list, and Save writes it to the config file', async () => {
    await page.getByRole('button', { name: 'Keep web-2:4001', exact: true }).click();
    await waitForRow(page, 'web-2:4001', 'yes');
    const lists = await getJson(`${adminUrl}/api/v1/filters/filter/obi`, TOKEN);
    assert.deepEqual(lists, { keep: [{ 'service.name': 'backend' }, { 'service.instance.id': 'web-2:4001' }], drop: [] });

    await page.getByRole('button', { name: 'Save to config file' }).click();
    await waitFor('the save to succeed', async () => /Saved the lists/.test(await statusText(page)), UI_TIMEOUT_MS);
    const text = fs.readFileSync(configFile, 'utf8');
    const saved = YAML.parse(text) as { processors: Record<string, { keep: unknown }> };
    assert.deepEqual(saved.processors['filter/obi']!.keep, [{ 'service.name': 'backend' }, { 'service.instance.id': 'web-2:4001' }]);
    assert.match(text, /\$\{env:SPANSIEVE_E2E_ADMIN_TOKEN\}/, 'the rest of the file is kept as written');
    console.log(`screenshot: ${await screenshot(page, 'admin-page-token-saved.png')}`);

    // And the change is live: the frontend's spans now reach the exporter.
    const before = sink.requests.length;
    await sendTraces(httpPort, [backend, frontend], 1);
    const probe = new GrpcSink();
    probe.requests.push(...sink.requests.slice(before));
    assert.deepEqual(new Set(probe.instanceIds()), new Set(['web-1:3001', 'web-2:4001']));
  });

  test('drops never empty the keep list (the server refuses an empty one)', async () => {
    await page.getByRole('button', { name: 'Drop web-2:4001', exact: true }).click();
    await waitForRow(page, 'web-2:4001', 'no');
    assert.deepEqual(await getJson(`${adminUrl}/api/v1/filters/filter%2Fobi`, TOKEN), {
      keep: [{ 'service.name': 'backend' }],
      drop: [{ 'service.instance.id': 'web-2:4001' }],
    });

    // Removing the last keep selector would leave `keep: []`: it stays, and the drop entry does the work.
    await page.getByRole('button', { name: 'Drop service backend', exact: true }).click();
    await waitForRow(page, 'web-1:3001', 'no');
    assert.deepEqual(await getJson(`${adminUrl}/api/v1/filters/filter%2Fobi`, TOKEN), {
      keep: [{ 'service.name': 'backend' }],
      drop: [{ 'service.instance.id': 'web-2:4001' }, { 'service.name': 'backend' }],
    });
    assert.equal(await page.locator('#errors').isHidden(), true, 'no refused change');
    assert.equal(await page.getByRole('button', { name: 'Remove keep selector 1: service.name="backend"' }).isDisabled(), true);
  });

  test('the page raised no script errors', () => {
    assert.deepEqual(browser?.pageErrors, []);
  });
});

describe('admin page shows sampling decisions', () => {
  // filter + tail_sampling (decision_wait 200 ms): an error trace is kept by the `errors` policy, a
  // health check is dropped by the `no-health` drop policy, a fast OK trace by no policy; the page's
  // Sampling section shows the counts per service and per policy, and the sampled-out traces.
  let service: Service | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let httpPort: number;
  let adminUrl: string;
  const backend = hostInstance('web-1', 7001, 'backend');
  const ignored = hostInstance('web-1', 7002, 'batch');
  const errorTrace = Buffer.from('5b8efff798038103d269b633813fc60c', 'hex');
  const healthTrace = Buffer.from('eee19b7ec3c1b174a7cba96a6bd1af3e', 'hex');
  const okTrace = Buffer.from('4bf92f3577b34da6a3ce929d0e0e4736', 'hex');

  before(async () => {
    let adminPort: number;
    [httpPort, adminPort] = await freePorts(2);
    adminUrl = `http://127.0.0.1:${adminPort}`;
    service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: {
        'filter/obi': { keep: [{ 'service.name': 'backend' }] },
        tail_sampling: {
          decision_wait: '200ms',
          policies: [
            { name: 'errors', type: 'status_code', status_code: { status_codes: ['ERROR'] } },
            { name: 'no-health', type: 'drop', drop: { drop_sub_policy: [{ name: 'health', type: 'string_attribute', string_attribute: { key: 'url.path', values: ['/health'] } }] } },
          ],
        },
      },
      exporters: { debug: { verbosity: 'basic' } },
      extensions: { admin: { endpoint: adminUrl.slice('http://'.length) } },
      service: {
        extensions: ['admin'],
        pipelines: { traces: { receivers: ['otlp'], processors: ['filter/obi', 'tail_sampling'], exporters: ['debug'] } },
        telemetry: { metrics: { level: 'none' } },
      },
    });
    browser = await launchBrowser();
    page = await browser.context.newPage();
  });

  after(async () => {
    await closeBrowser(browser);
    await service?.shutdown();
  });

  test('per-service and per-policy counts, and the sampled-out traces with their policy', async () => {
    const health = [{ key: 'url.path', value: { stringValue: '/health' } }];
    const body = encodeTraces([
      obiResourceSpans(backend, [obiSpan({ traceId: errorTrace, statusCode: 2 }), obiSpan({ traceId: errorTrace })]),
      obiResourceSpans(backend, [obiSpan({ traceId: healthTrace, attributes: health })]),
      obiResourceSpans(backend, [obiSpan({ traceId: okTrace })]),
      obiResourceSpans(ignored, [obiSpan()]),
    ]);
    const res = await fetch(`http://127.0.0.1:${httpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body });
    assert.equal(res.status, 200);

    await page.goto(`${adminUrl}/`);
    // The decisions come after decision_wait and the page's next refresh: waited for, not slept.
    const policyRow = (policy: string) => page.locator('#sampling-policies tbody tr', { hasText: policy });
    await policyRow('no-health').waitFor();
    await policyRow('errors').waitFor();
    assert.deepEqual((await policyRow('errors').locator('> *').allTextContents()).map((t) => t.trim()), ['tail_sampling', 'errors', '1', '0']);
    assert.deepEqual((await policyRow('no-health').locator('> *').allTextContents()).map((t) => t.trim()), ['tail_sampling', 'no-health', '0', '1']);
    await policyRow('(no policy sampled)').waitFor();
    assert.deepEqual((await policyRow('(no policy sampled)').locator('> *').allTextContents()).map((t) => t.trim()), ['tail_sampling', '(no policy sampled)', '0', '1']);

    const serviceRow = (name: string) => page.locator('#sampling-services tbody tr', { hasText: name });
    assert.deepEqual((await serviceRow('backend').locator('> *').allTextContents()).map((t) => t.trim()), ['backend', '4', '4', '2', 'tail_sampling: 2 / 4']);
    assert.deepEqual((await serviceRow('batch').locator('> *').allTextContents()).map((t) => t.trim()), ['batch', '1', '0', '—', '—']);

    const droppedRow = (trace: Buffer) => page.locator('#sampling-dropped tbody tr', { hasText: trace.toString('hex') });
    const healthCells = (await droppedRow(healthTrace).locator('> *').allTextContents()).map((t) => t.trim());
    assert.deepEqual(healthCells.slice(1), [healthTrace.toString('hex'), 'backend', 'tail_sampling', 'no-health', 'drop policy']);
    const okCells = (await droppedRow(okTrace).locator('> *').allTextContents()).map((t) => t.trim());
    assert.deepEqual(okCells.slice(1), [okTrace.toString('hex'), 'backend', 'tail_sampling', '—', 'no policy sampled']);
    assert.equal(await droppedRow(errorTrace).count(), 0, 'the kept trace is not listed');
    await screenshot(page, 'admin-page-sampling.png');
  });

  test('the page raised no script errors', () => {
    assert.deepEqual(browser?.pageErrors, []);
  });
});

describe('admin page with OTTL resource conditions', () => {
  // A filter with trace_conditions: the page shows what the resource condition drops (the lists
  // cannot change that, so Keep is disabled), and notes what span conditions may still drop.
  let service: Service | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let adminUrl: string;
  const web = hostInstance('web-1', 3001, 'backend');
  const staging: ObiInstance = { instanceId: 'stage-1:3002', serviceName: 'backend', extra: { 'deployment.environment': 'staging' } };

  before(async () => {
    const [httpPort, adminPort] = await freePorts(2);
    adminUrl = `http://127.0.0.1:${adminPort}`;
    service = await startService({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${httpPort}` } } } },
      processors: {
        'filter/obi': {
          drop: [{ 'service.name': 'other' }],
          trace_conditions: ['resource.attributes["deployment.environment"] == "staging"', 'span.attributes["url.path"] == "/health"'],
        },
      },
      exporters: { debug: { verbosity: 'basic' } },
      extensions: { admin: { endpoint: adminUrl.slice('http://'.length) } },
      service: { extensions: ['admin'], pipelines: { traces: { receivers: ['otlp'], processors: ['filter/obi'], exporters: ['debug'] } }, telemetry: { metrics: { level: 'none' } } },
    });
    await sendTraces(httpPort, [web, staging], 2);
    browser = await launchBrowser();
    page = await browser.context.newPage();
  });

  after(async () => {
    await closeBrowser(browser);
    await service?.shutdown();
  });

  test('the resource condition drops in the table; span conditions are noted; Keep cannot undo a condition', async () => {
    await page.goto(`${adminUrl}/`);
    await waitForRow(page, staging.instanceId, 'no');
    await waitForRow(page, web.instanceId, 'yes');
    await waitFor('the dry run to show', async () => /spans may be dropped by 1 span condition/.test((await rowCells(page, web.instanceId))[4]!), UI_TIMEOUT_MS);
    const stagingCells = await rowCells(page, staging.instanceId);
    assert.match(stagingCells[5]!, /dropped by: OTTL condition/);
    const keep = page.getByRole('button', { name: `Keep ${staging.instanceId}`, exact: true });
    assert.equal(await keep.isDisabled(), true);
    assert.match((await keep.getAttribute('title')) ?? '', /OTTL condition/);
    // The lists already keep every backend instance: the unrelated drop entry is not "in the way".
    assert.equal(await page.getByRole('button', { name: 'Keep service backend', exact: true }).isDisabled(), true);
    console.log(`screenshot: ${await screenshot(page, 'admin-page-ottl.png')}`);
  });

  test('the page raised no script errors', () => {
    assert.deepEqual(browser?.pageErrors, []);
  });
});
