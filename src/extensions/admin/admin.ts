import { timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Component, ExtensionFactory, Host, ServiceControl } from '../../component/component';
import type { Node } from '../../config/reader';
import { closeServer, listen, parseHostPort } from '../../util/net';

export interface AdminConfig {
  readonly endpoint: string;
  /** Bearer token for /api; required when the endpoint is not loopback. */
  readonly token: string | undefined;
}

const MAX_BODY_BYTES = 1024 * 1024;

/** Where `npm run build` puts the page (scripts/build-page.js): beside this module in dist/. */
export const PAGE_DIR = join(__dirname, 'page');

/** The page's files by URL path. Relative links in index.html name the others. */
export const PAGE_FILES: ReadonlyMap<string, { readonly file: string; readonly type: string }> = new Map([
  ['/', { file: 'index.html', type: 'text/html; charset=utf-8' }],
  ['/index.html', { file: 'index.html', type: 'text/html; charset=utf-8' }],
  ['/app.js', { file: 'app.js', type: 'text/javascript; charset=utf-8' }],
  ['/page.css', { file: 'page.css', type: 'text/css; charset=utf-8' }],
]);

// The page loads its own script and style only and talks to this origin's API.
const PAGE_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors?: readonly string[],
  ) {
    super(message);
  }
}

/**
 * Run-time control over HTTP: the instance inventory, the settings of every live-editable
 * component (the filter processors' lists: read, replace, try on the inventory, save to the config
 * file; under /api/v1/filters whatever the component) and a page that shows both. Changes apply from the next request; receivers and
 * queues are not touched.
 */
export class AdminExtension implements Component {
  private server: http.Server | undefined;
  private control: ServiceControl | undefined;
  /** The page's files read at start, or why they could not be. */
  private page: Map<string, Buffer> | Error | undefined;

  constructor(
    private readonly config: AdminConfig,
    private readonly logger: Logger,
  ) {}

  async start(host: Host): Promise<void> {
    if (!host.control) throw new Error('the admin extension needs a service that offers run-time control');
    this.control = host.control;
    this.page = await readPage();
    if (this.page instanceof Error) this.logger.error({ err: this.page }, 'the admin page cannot be served; the admin API works');
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        const apiError = err instanceof ApiError ? err : undefined;
        if (!apiError) this.logger.error({ err }, 'admin API request failed');
        sendJson(res, apiError?.status ?? 500, {
          error: clip(apiError?.message ?? (err as Error).message),
          ...(apiError?.errors ? { errors: apiError.errors } : {}),
        });
      });
    });
    await listen(this.server, this.config.endpoint);
  }

  async shutdown(): Promise<void> {
    await closeServer(this.server);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const control = this.control!;
    const method = req.method ?? 'GET';
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://admin').pathname;
    } catch {
      throw new ApiError(400, `malformed request target: ${req.url ?? ''}`);
    }
    const pageFile = PAGE_FILES.get(path);
    if (pageFile) {
      if (method !== 'GET') throw new ApiError(405, 'use GET');
      if (!(this.page instanceof Map)) throw new ApiError(500, this.page?.message ?? 'the admin page is not loaded');
      res
        .writeHead(200, {
          'content-type': pageFile.type,
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
          'content-security-policy': PAGE_POLICY,
        })
        .end(this.page.get(pageFile.file));
      return;
    }
    if (!path.startsWith('/api/')) throw new ApiError(404, `no such page: ${path}`);
    this.authorize(req);
    if (method !== 'GET' && method !== 'HEAD') refuseCrossSite(req);

    if (path === '/api/v1/instances') {
      if (method !== 'GET') throw new ApiError(405, 'use GET');
      sendJson(res, 200, await control.instances());
      return;
    }
    if (path === '/api/v1/sampling') {
      if (method !== 'GET') throw new ApiError(405, 'use GET');
      sendJson(res, 200, await control.sampling());
      return;
    }
    if (path === '/api/v1/filters') {
      if (method !== 'GET') throw new ApiError(405, 'use GET');
      sendJson(res, 200, Object.fromEntries(await control.liveSettings()));
      return;
    }
    const filterPath = /^\/api\/v1\/filters\/(.+?)(\/save|\/dry-run)?$/.exec(path);
    if (filterPath) {
      let id: string;
      try {
        id = decodeURIComponent(filterPath[1]!);
      } catch {
        throw new ApiError(400, `malformed percent-encoding in the filter processor id: ${filterPath[1]!}`);
      }
      const components = await control.liveSettings();
      if (!components.has(id)) throw new ApiError(404, `no filter processor or other live-editable component "${id}" runs (known: ${[...components.keys()].join(', ') || 'none'})`);
      if (filterPath[2] === '/dry-run') {
        if (method !== 'POST') throw new ApiError(405, 'use POST with the lists to try');
        const result = await control.dryRun(id, await readJson(req));
        if (result.errors.length > 0) throw new ApiError(400, `invalid settings for ${id}`, result.errors);
        sendJson(res, 200, { instances: result.instances });
        return;
      }
      if (filterPath[2]) {
        if (method !== 'POST') throw new ApiError(405, 'use POST to save');
        try {
          await control.saveLive(id);
        } catch (err) {
          throw new ApiError(409, (err as Error).message);
        }
        sendJson(res, 200, { saved: id });
        return;
      }
      if (method === 'GET') {
        sendJson(res, 200, components.get(id));
        return;
      }
      if (method !== 'PUT') throw new ApiError(405, 'use GET or PUT');
      const body = await readJson(req);
      const errors = await control.setLive(id, body);
      if (errors.length > 0) throw new ApiError(400, `invalid settings for ${id}`, errors);
      sendJson(res, 200, (await control.liveSettings()).get(id));
      return;
    }
    throw new ApiError(404, `no such API: ${method} ${path}`);
  }

  private authorize(req: http.IncomingMessage): void {
    const token = this.config.token;
    if (!token) {
      // Without a token the API trusts loopback only. A web page elsewhere could still reach it
      // through a DNS name that resolves to 127.0.0.1 (DNS rebinding); its Host header gives it away.
      const host = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
      if (!isLoopbackHost(host)) throw new ApiError(403, `the admin API answers requests addressed to a loopback name only (Host: ${req.headers.host ?? ''})`);
      return;
    }
    const header = req.headers.authorization ?? '';
    // The scheme is case-insensitive (RFC 9110 section 11.1).
    const given = Buffer.from(/^bearer +(.*)$/is.exec(header)?.[1]?.trim() ?? '');
    const wanted = Buffer.from(token);
    const ok = given.length === wanted.length && timingSafeEqual(given, wanted);
    if (!ok) throw new ApiError(401, 'a valid bearer token is required (Authorization: Bearer <token>)');
  }
}

/** Reads the built page; a missing file means the build skipped scripts/build-page.js. */
async function readPage(): Promise<Map<string, Buffer> | Error> {
  const files = new Map<string, Buffer>();
  try {
    for (const { file } of PAGE_FILES.values()) {
      if (!files.has(file)) files.set(file, await fs.promises.readFile(join(PAGE_DIR, file)));
    }
  } catch (err) {
    return new Error(`the admin page is not built (${(err as Error).message}): run npm run build`);
  }
  return files;
}

/**
 * Refuses a state-changing request a browser sends on behalf of another site (CSRF): a token does
 * not help when none is configured, and a form POST needs no preflight. Fetch Metadata decides when
 * the browser sends it (all current ones do; it survives a reverse proxy that rewrites Host);
 * otherwise an Origin header must name the host the request was addressed to. Clients that are
 * not browsers send neither and pass.
 */
function refuseCrossSite(req: http.IncomingMessage): void {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined) {
    if (site !== 'same-origin' && site !== 'none') {
      throw new ApiError(403, `cross-site requests may not change anything (Sec-Fetch-Site: ${site}); use the admin page or a non-browser client`);
    }
    return;
  }
  const origin = req.headers.origin;
  if (origin === undefined) return;
  let originHost: string | undefined;
  try {
    originHost = new URL(origin).host;
  } catch {
    originHost = undefined;
  }
  if (!originHost || originHost.toLowerCase() !== (req.headers.host ?? '').toLowerCase()) {
    throw new ApiError(403, `cross-site requests may not change anything (Origin: ${origin}, Host: ${req.headers.host ?? ''}); use the admin page or a non-browser client`);
  }
}

const MAX_ERROR_CHARS = 1000;

/** Error messages echo what the client sent (paths, headers): kept short whatever it sent. */
function clip(text: string): string {
  return text.length <= MAX_ERROR_CHARS ? text : `${text.slice(0, MAX_ERROR_CHARS)}... (${text.length} characters)`;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  const headers: Record<string, string> = { 'content-type': 'application/json', 'cache-control': 'no-store' };
  if (status === 401) headers['www-authenticate'] = 'Bearer';
  res.writeHead(status, headers).end(text);
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new ApiError(413, `body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new ApiError(400, `body is not valid JSON: ${(err as Error).message}`);
  }
}

export const adminExtensionFactory: ExtensionFactory<AdminConfig> = {
  inPrimary: true,
  type: 'admin',
  kind: 'extension',
  parseConfig(node: Node): AdminConfig {
    const at = node.struct(['endpoint', 'token']);
    const endpoint = at('endpoint').endpoint('127.0.0.1:13180');
    const token = at('token').string('') || undefined;
    const host = parseHostPort(endpoint)?.host ?? '';
    if (!isLoopbackHost(host) && !token) {
      at('token').report(`required when the admin endpoint (${endpoint}) is not bound to loopback: anyone who can reach it could change the filters`);
    }
    return { endpoint, token };
  },
  create: (settings, config) => new AdminExtension(config, settings.logger),
};
