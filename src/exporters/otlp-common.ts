import * as fs from 'node:fs';
import { parseAuth, type AuthenticatorRef } from '../component/auth';
import type { Node } from '../config/reader';
import { parseClientTls, type ClientTlsConfig } from '../config/tls';
import { HELPER_KEYS, parseHelperConfig, type HelperConfig } from './exporterhelper/exporterhelper';

/** Request compressions: configgrpc's for otlp, confighttp's (lz4 aside) for otlphttp. */
export const GRPC_COMPRESSIONS = ['gzip', 'zstd', 'snappy', 'none'] as const;
export const HTTP_COMPRESSIONS = ['gzip', 'zstd', 'snappy', 'x-snappy-framed', 'zlib', 'deflate', 'none'] as const;
export type ClientCompression = (typeof HTTP_COMPRESSIONS)[number];

/** Options shared by the otlp and otlphttp exporters. */
export interface OtlpClientConfig {
  readonly headers: Readonly<Record<string, string>>;
  readonly compression: ClientCompression;
  readonly tls: ClientTlsConfig;
  readonly helper: HelperConfig;
  /** Id of the client authenticator extension whose headers every request carries; undefined: none. */
  readonly auth: string | undefined;
}

export const OTLP_CLIENT_KEYS = ['headers', 'compression', 'tls', 'auth', ...HELPER_KEYS] as const;

/** Reads the PEM file a `ca_file` option names (at config time, so a missing file is a config error). */
export function readCaFile(node: Node): Buffer | undefined {
  const file = node.string('');
  if (!file) return undefined;
  try {
    return fs.readFileSync(file);
  } catch (err) {
    node.report(`cannot read ${file}: ${(err as Error).message}`);
    return undefined;
  }
}

/** An http(s) URL option; undefined (with an error naming `example`) when it is not one. */
export function parseHttpUrl(node: Node, example: string, fallback = ''): URL | undefined {
  const text = node.string(fallback);
  if (!text) return undefined;
  try {
    const url = new URL(text);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('scheme must be http or https');
    return url;
  } catch (err) {
    node.report(`expected an http(s) URL such as ${example}, got ${JSON.stringify(text)} (${(err as Error).message})`);
    return undefined;
  }
}

export function parseOtlpClientConfig(at: (key: string) => Node, allowed: readonly ClientCompression[]): OtlpClientConfig {
  const node = at('compression');
  return {
    headers: at('headers').stringMap(),
    // As in the Collector: gzip by default, and "" means none.
    compression: node.value === '' ? 'none' : node.oneOf<ClientCompression>('gzip', allowed),
    tls: parseClientTls(at('tls')),
    helper: parseHelperConfig(at),
    auth: parseAuth(at('auth')),
  };
}

/** For the config validation: the client authenticator an exporter's `auth` names. */
export function clientAuthenticatorsOf(config: { readonly auth: string | undefined }): AuthenticatorRef[] {
  return config.auth === undefined ? [] : [{ key: 'auth::authenticator', id: config.auth }];
}

/** Retry-After is either delay-seconds or an HTTP date. */
export function parseRetryAfter(value: string | undefined): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
