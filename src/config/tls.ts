import * as fs from 'node:fs';
import * as tls from 'node:tls';
import type { Logger } from 'pino';
import type { Node } from './reader';

// The Collector's configtls keys, for servers (receivers) and clients (exporters). Files are read
// at config time, so a missing or unreadable file is a config error naming its key.

const VERSIONS: Readonly<Record<string, tls.SecureVersion>> = { '1.0': 'TLSv1', '1.1': 'TLSv1.1', '1.2': 'TLSv1.2', '1.3': 'TLSv1.3' };
const VERSION_ORDER = ['1.0', '1.1', '1.2', '1.3'];

export const SERVER_TLS_KEYS = ['cert_file', 'key_file', 'ca_file', 'client_ca_file', 'min_version', 'max_version', 'reload_interval'] as const;
export const CLIENT_TLS_KEYS = ['insecure', 'insecure_skip_verify', 'server_name_override', 'cert_file', 'key_file', 'ca_file', 'min_version', 'max_version'] as const;

export interface ServerTlsConfig {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /** Set: clients must present a certificate signed by one of these CAs (mTLS). */
  readonly clientCaFile: string;
  readonly minVersion: tls.SecureVersion;
  readonly maxVersion: tls.SecureVersion | undefined;
  /** How often the files are read again; 0: never. */
  readonly reloadIntervalMs: number;
  /** The context options read at config time. */
  readonly initial: tls.SecureContextOptions;
}

export interface ClientTlsConfig {
  readonly insecure: boolean;
  readonly insecureSkipVerify: boolean;
  /** Options for tls.connect / https.request, built once. */
  readonly options: tls.ConnectionOptions;
}

function readFile(node: Node, file: string): Buffer | undefined {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    node.report(`cannot read ${file}: ${(err as Error).message}`);
    return undefined;
  }
}

/** min_version / max_version: "1.0".."1.3"; min > max is an error, as in configtls. */
function versions(at: (key: string) => Node): { min: tls.SecureVersion; max: tls.SecureVersion | undefined } {
  const read = (key: string, fallback: string) => {
    const node = at(key);
    const text = node.string(fallback);
    if (text === '' || VERSIONS[text]) return text;
    node.report(`must be one of ${VERSION_ORDER.map((v) => JSON.stringify(v)).join(', ')}, got ${JSON.stringify(node.value)}`);
    return fallback;
  };
  const min = read('min_version', '1.2') || '1.2';
  const max = read('max_version', '');
  if (max && VERSION_ORDER.indexOf(min) > VERSION_ORDER.indexOf(max)) at('min_version').report(`${JSON.stringify(min)} is greater than max_version ${JSON.stringify(max)}`);
  return { min: VERSIONS[min]!, max: max ? VERSIONS[max] : undefined };
}

/** Reads the certificate, key and CA files into context options; reports on `at`'s keys. */
function loadFiles(at: (key: string) => Node, files: { cert: string; key: string; ca: string }): tls.SecureContextOptions {
  const out: { cert?: Buffer; key?: Buffer; ca?: Buffer } = {};
  if (files.cert && !files.key) at('key_file').report('required when cert_file is set');
  if (files.key && !files.cert) at('cert_file').report('required when key_file is set');
  if (files.cert) out.cert = readFile(at('cert_file'), files.cert);
  if (files.key) out.key = readFile(at('key_file'), files.key);
  if (files.ca) out.ca = readFile(at('ca_file'), files.ca);
  return out;
}

/** A certificate that does not match its key, or a file that is not PEM, fails here rather than at start. */
function checkContext(node: Node, options: tls.SecureContextOptions, errorsBefore: number): void {
  // Only when the files themselves were read: one error per problem.
  if (node.issues.errors.length > errorsBefore) return;
  try {
    tls.createSecureContext(options);
  } catch (err) {
    node.report(`the TLS files are not usable: ${(err as Error).message}`);
  }
}

/** A receiver's `tls:`; undefined when absent (plaintext). */
export function parseServerTls(node: Node): ServerTlsConfig | undefined {
  if (node.isAbsent) return undefined;
  const errorsBefore = node.issues.errors.length;
  const at = node.struct(SERVER_TLS_KEYS);
  const certFile = at('cert_file').string('');
  const keyFile = at('key_file').string('');
  const caFile = at('ca_file').string('');
  const clientCaFile = at('client_ca_file').string('');
  if (!certFile && !keyFile) node.report('a server needs cert_file and key_file');
  const { min, max } = versions(at);
  const reloadIntervalMs = at('reload_interval').duration(0);
  const initial = loadFiles(at, { cert: certFile, key: keyFile, ca: '' });
  if (caFile) readFile(at('ca_file'), caFile);
  const clientCa = clientCaFile ? readFile(at('client_ca_file'), clientCaFile) : undefined;
  const config = { certFile, keyFile, caFile, clientCaFile, minVersion: min, maxVersion: max, reloadIntervalMs };
  const context = { ...initial, ...(clientCa ? { ca: clientCa } : {}), ...versionOptions(config) };
  checkContext(node, context, errorsBefore);
  return { ...config, initial: context };
}

function versionOptions(config: { minVersion: tls.SecureVersion; maxVersion: tls.SecureVersion | undefined }): tls.SecureContextOptions {
  return { minVersion: config.minVersion, ...(config.maxVersion ? { maxVersion: config.maxVersion } : {}) };
}

/** Options for tls.createServer-like constructors: the context plus client-certificate checking. */
export function serverOptions(config: ServerTlsConfig, handshakeTimeoutMs: number): tls.TlsOptions {
  return {
    ...config.initial,
    // configtls: client_ca_file means RequireAndVerifyClientCert.
    requestCert: config.clientCaFile !== '',
    rejectUnauthorized: config.clientCaFile !== '',
    ...(handshakeTimeoutMs > 0 ? { handshakeTimeout: handshakeTimeoutMs } : {}),
  };
}

/**
 * reload_interval: reads the files again on that period and swaps the server's context when they
 * changed; a failed read or a bad pair keeps the current context (logged). Returns a stop function.
 */
export function watchServerTls(server: tls.Server, config: ServerTlsConfig, logger: Logger, what: string): () => void {
  if (config.reloadIntervalMs <= 0) return () => undefined;
  let current = [config.initial.cert, config.initial.key, config.initial.ca] as (Buffer | undefined)[];
  const timer = setInterval(() => {
    let next: (Buffer | undefined)[];
    try {
      next = [config.certFile, config.keyFile, config.clientCaFile].map((file) => (file ? fs.readFileSync(file) : undefined));
    } catch (err) {
      logger.warn({ err: (err as Error).message }, `${what}: cannot read the TLS files again; keeping the current certificate`);
      return;
    }
    if (next.every((buf, i) => (buf === undefined ? current[i] === undefined : current[i] !== undefined && buf.equals(current[i])))) return;
    try {
      server.setSecureContext({ cert: next[0], key: next[1], ...(next[2] ? { ca: next[2] } : {}), ...versionOptions(config) });
      current = next;
      logger.info(`${what}: TLS certificate reloaded`);
    } catch (err) {
      logger.warn({ err: (err as Error).message }, `${what}: the TLS files on disk are not usable; keeping the current certificate`);
    }
  }, config.reloadIntervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** An exporter's `tls:` (configtls ClientConfig). */
export function parseClientTls(node: Node): ClientTlsConfig {
  const errorsBefore = node.issues.errors.length;
  const at = node.struct(CLIENT_TLS_KEYS);
  const { min, max } = versions(at);
  const serverName = at('server_name_override').string('');
  const files = loadFiles(at, { cert: at('cert_file').string(''), key: at('key_file').string(''), ca: at('ca_file').string('') });
  const insecureSkipVerify = at('insecure_skip_verify').boolean(false);
  if (files.cert || files.ca) checkContext(node, { ...files, ...versionOptions({ minVersion: min, maxVersion: max }) }, errorsBefore);
  return {
    insecure: at('insecure').boolean(false),
    insecureSkipVerify,
    options: {
      ...files,
      ...versionOptions({ minVersion: min, maxVersion: max }),
      ...(serverName ? { servername: serverName } : {}),
      rejectUnauthorized: !insecureSkipVerify,
    },
  };
}
