import { createHash, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import * as path from 'node:path';
import type { ClientAuthenticator, ServerAuthenticator } from '../../component/auth';
import type { Component, CreateSettings, ExtensionFactory } from '../../component/component';
import type { Node } from '../../config/reader';

// The Collector's bearertokenauth extension: one static token (or several, or a file of them,
// re-read when it changes) checked on incoming requests and sent on outgoing ones, in the
// `Authorization` header as `Bearer <token>`.

export interface BearerTokenAuthConfig {
  /** Header carrying the credentials; compared case-insensitively (HTTP/2 and gRPC metadata are lower-case). */
  readonly header: string;
  /** Put before the token with one space; '' sends the token alone. */
  readonly scheme: string;
  /** `token` or `tokens` as written; ignored (with a warning) when `filename` is set, as in the Collector. */
  readonly tokens: readonly string[];
  readonly filename: string | undefined;
  readonly retryOnFailure: { readonly enabled: boolean; readonly maxRetries: number; readonly intervalMs: number };
  readonly waitForTokenFile: boolean;
}

/** How often the token file is checked for a change (its size, times and inode). */
export const TOKEN_FILE_POLL_MS = 1000;

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// A header value cannot carry control characters (node refuses to send them; a server would
// split or refuse the header).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;

export function parseBearerTokenAuthConfig(node: Node): BearerTokenAuthConfig {
  const at = node.struct(['header', 'scheme', 'token', 'tokens', 'filename', 'retry_on_failure', 'wait_for_token_file']);
  const header = at('header').string('Authorization');
  if (!HEADER_NAME.test(header)) at('header').report(`expected an HTTP header name, got ${JSON.stringify(header)}`);
  const scheme = at('scheme').string('Bearer');
  if (/\s/.test(scheme) || CONTROL.test(scheme)) at('scheme').report('must be one word (the token follows it after one space)');
  const checkToken = (n: Node, token: string) => {
    if (token === '') n.report('must not be empty');
    else if (CONTROL.test(token)) n.report('must not contain control characters or line breaks (a header value cannot carry them)');
  };
  const tokenNode = at('token');
  const token = tokenNode.isAbsent ? undefined : tokenNode.string('');
  if (token !== undefined) checkToken(tokenNode, token);
  const tokenList = at('tokens').list().map((n) => {
    const t = n.string('');
    checkToken(n, t);
    return t;
  });
  const filenameNode = at('filename');
  const filename = filenameNode.string('') || undefined;
  if (token !== undefined && tokenList.length > 0) node.report('set token or tokens, not both');
  if (token === undefined && tokenList.length === 0 && filename === undefined) node.report('no bearer token provided: set token, tokens or filename');

  const retry = at('retry_on_failure').struct(['enabled', 'max_retries', 'interval']);
  const retryOnFailure = {
    enabled: retry('enabled').boolean(false),
    maxRetries: retry('max_retries').integer(0, 0),
    intervalMs: retry('interval').duration(0),
  };
  if (retryOnFailure.enabled) {
    if (filename === undefined) at('retry_on_failure').report('requires filename');
    if (retryOnFailure.intervalMs <= 0) retry('interval').report('must be greater than 0 when retry_on_failure is enabled');
  }
  const waitForTokenFile = at('wait_for_token_file').boolean(false);
  if (waitForTokenFile && filename === undefined) at('wait_for_token_file').report('requires filename');
  else if (waitForTokenFile && !retryOnFailure.enabled) at('wait_for_token_file').report('requires retry_on_failure.enabled');
  return {
    header,
    scheme,
    tokens: token !== undefined ? [token] : tokenList,
    filename: filename === undefined ? undefined : path.resolve(filename),
    retryOnFailure,
    waitForTokenFile,
  };
}

/**
 * The tokens of a token file, as the Collector reads it: the content trimmed, then per line the
 * first whitespace-separated word (the rest of the line is a comment). Empty: no token.
 */
export function tokensOfFile(text: string): string[] {
  const tokens: string[] = [];
  for (const line of text.trim().split(/\r?\n/)) {
    const first = line.trim().split(/\s+/)[0];
    if (first) tokens.push(first);
  }
  return tokens;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** What the file looked like when last read: a change in any of these means read it again. */
function signature(stat: fs.Stats): string {
  return `${stat.ino}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}`;
}

export class BearerTokenAuth implements Component, ServerAuthenticator, ClientAuthenticator {
  /** Digests of the accepted header values: equal-length buffers for timingSafeEqual. */
  private expected: Buffer[] = [];
  private outgoing: Readonly<Record<string, string>> = {};
  private readonly headerKey: string;
  private lastSignature = '';
  private poller: NodeJS.Timeout | undefined;
  private polling = false;
  private stopped = false;
  /** Why nothing is accepted yet (a token file still awaited in the background). */
  private notLoaded: string | undefined;
  /** Ends the wait between two retry_on_failure attempts (shutdown). */
  private wakeRetry: (() => void) | undefined;
  readonly challenge: string | undefined;

  constructor(
    private readonly settings: CreateSettings,
    readonly config: BearerTokenAuthConfig,
  ) {
    this.headerKey = config.header.toLowerCase();
    this.challenge = config.scheme || undefined;
    if (config.filename === undefined) this.setTokens(config.tokens);
  }

  async start(): Promise<void> {
    const { filename, tokens, retryOnFailure, waitForTokenFile } = this.config;
    if (filename === undefined) return;
    if (tokens.length > 0) this.settings.logger.warn({ filename }, 'bearertokenauth: filename is set, so token / tokens are ignored');
    if (!retryOnFailure.enabled) {
      // Unlike the Collector (which starts and then refuses every request), an unreadable file fails the start.
      const error = this.readFile();
      if (error !== undefined) throw new Error(`bearertokenauth: ${error}`);
    } else if (waitForTokenFile) {
      await this.awaitFile();
    } else {
      this.notLoaded = `no token loaded yet (waiting for the token file ${filename})`;
      this.awaitFile().catch((err: unknown) => this.settings.logger.error({ err: (err as Error).message }, 'bearertokenauth: token file never became readable; every request stays refused'));
    }
    this.poller = setInterval(() => void this.poll(), TOKEN_FILE_POLL_MS);
    this.poller.unref();
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
    this.wakeRetry?.();
    clearInterval(this.poller);
    this.poller = undefined;
  }

  authenticate(headers: IncomingHttpHeaders): string | undefined {
    const raw = headers[this.headerKey];
    const value = Array.isArray(raw) ? raw[0] : raw;
    if (value === undefined || value === '') return `missing or empty ${this.config.header} header`;
    if (this.notLoaded !== undefined) return this.notLoaded;
    // Digests have one length whatever was sent, so every comparison runs in constant time; all
    // are made, so the time does not say which token matched either.
    const received = digest(value);
    let match = false;
    for (const expected of this.expected) match = timingSafeEqual(expected, received) || match;
    return match ? undefined : `the ${this.config.header} header does not match the expected scheme and token`;
  }

  requestHeaders(): Readonly<Record<string, string>> {
    return this.outgoing;
  }

  private setTokens(tokens: readonly string[]): void {
    const values = tokens.map((token) => (this.config.scheme ? `${this.config.scheme} ${token}` : token));
    this.expected = values.map(digest);
    // A client sends the first token, as the Collector does.
    this.outgoing = Object.freeze(values.length > 0 ? { [this.config.header]: values[0]! } : {});
    this.notLoaded = undefined;
  }

  /** Reads the token file; returns why it cannot be used (the tokens then stay as they were). */
  private readFile(): string | undefined {
    const filename = this.config.filename!;
    let text: string;
    try {
      // Noted before reading, so a file that cannot be used is not tried again until it changes.
      this.lastSignature = signature(fs.statSync(filename));
      text = fs.readFileSync(filename, 'utf8');
    } catch (err) {
      return `cannot read the token file ${filename}: ${(err as Error).message}`;
    }
    const tokens = tokensOfFile(text);
    if (tokens.length === 0) return `the token file ${filename} is empty`;
    if (tokens.some((t) => CONTROL.test(t))) return `the token file ${filename} holds control characters`;
    this.setTokens(tokens);
    return undefined;
  }

  /** retry_on_failure: the file is tried at once, then every interval, up to max_retries (0: forever). */
  private async awaitFile(): Promise<void> {
    const { maxRetries, intervalMs } = this.config.retryOnFailure;
    for (let attempt = 0; ; attempt++) {
      const error = this.readFile();
      if (error === undefined || this.stopped) return;
      if (maxRetries > 0 && attempt >= maxRetries) throw new Error(`bearertokenauth: ${error} (after ${maxRetries} retries)`);
      this.settings.logger.warn({ filename: this.config.filename, attempt: attempt + 1, nextAttemptInMs: intervalMs }, 'bearertokenauth: token file not readable yet; retrying');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.wakeRetry = undefined;
          resolve();
        }, intervalMs);
        this.wakeRetry = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Re-reads the file when it changed; a file gone or emptied keeps the tokens there were. */
  private async poll(): Promise<void> {
    if (this.polling || this.notLoaded !== undefined) return;
    this.polling = true;
    try {
      const filename = this.config.filename!;
      let stat: fs.Stats;
      try {
        stat = await fs.promises.stat(filename);
      } catch (err) {
        // Between a delete and a create while the file is being replaced; logged when it lasts.
        if (this.lastSignature !== 'missing') this.settings.logger.warn({ filename, err: (err as Error).message }, 'bearertokenauth: token file not readable; keeping the tokens last read');
        this.lastSignature = 'missing';
        return;
      }
      if (this.stopped || signature(stat) === this.lastSignature) return;
      const error = this.readFile();
      if (error !== undefined) this.settings.logger.warn({ filename, err: error }, 'bearertokenauth: cannot use the changed token file; keeping the tokens last read');
      else this.settings.logger.info({ filename, tokens: this.expected.length }, 'bearertokenauth: token file changed; tokens reloaded');
    } finally {
      this.polling = false;
    }
  }
}

export const bearerTokenAuthFactory: ExtensionFactory<BearerTokenAuthConfig> = {
  type: 'bearertokenauth',
  kind: 'extension',
  authenticates: ['server', 'client'],
  parseConfig: parseBearerTokenAuthConfig,
  create: (settings, config) => new BearerTokenAuth(settings, config),
};
