import type { IncomingHttpHeaders } from 'node:http';
import type { Node } from '../config/reader';
import type { Host } from './component';

// The Collector's configauth: a receiver or exporter names an authenticator extension under
// `auth: { authenticator: <id> }`; the extension checks incoming requests (server) or adds
// credentials to outgoing ones (client).

/** Checks the headers of an incoming request (HTTP headers, gRPC metadata: both lower-case keys). */
export interface ServerAuthenticator {
  /** undefined: authenticated; otherwise why not, for the client and the log (never a secret). */
  authenticate(headers: IncomingHttpHeaders): string | undefined;
  /** The `WWW-Authenticate` value an HTTP 401 carries (RFC 9110 11.6.1); undefined: none. */
  readonly challenge?: string | undefined;
}

/** Adds credentials to outgoing requests. */
export interface ClientAuthenticator {
  /**
   * The headers to add to a request now. The same object until the credentials change (a token
   * file rewritten), so a caller may keep what it built from it while the identity holds.
   */
  requestHeaders(): Readonly<Record<string, string>>;
}

export function isServerAuthenticator(component: unknown): component is ServerAuthenticator {
  return typeof (component as Partial<ServerAuthenticator> | undefined)?.authenticate === 'function';
}

export function isClientAuthenticator(component: unknown): component is ClientAuthenticator {
  return typeof (component as Partial<ClientAuthenticator> | undefined)?.requestHeaders === 'function';
}

/** A reference from a component's config to an authenticator extension, checked by the config validation. */
export interface AuthenticatorRef {
  /** Key path below the component, e.g. `protocols::grpc::auth::authenticator`. */
  readonly key: string;
  readonly id: string;
}

const EXTENSION_ID = /^[a-z][a-z0-9_]*(?:\/[^\s/]+)?$/;

/**
 * `auth: { authenticator: <extension id> }` (configauth.Config); undefined when absent.
 * `extraKeys`: keys the Collector accepts beside it (confighttp's server `request_params`).
 */
export function parseAuth(node: Node, extraKeys: readonly string[] = []): string | undefined {
  if (node.isAbsent) return undefined;
  const at = node.struct(['authenticator', ...extraKeys]);
  const idNode = at('authenticator');
  const id = idNode.string('');
  if (id === '') {
    idNode.report('required: the id of an authenticator extension, e.g. bearertokenauth or bearertokenauth/<name>');
    return undefined;
  }
  if (!EXTENSION_ID.test(id)) {
    idNode.report(`expected an extension id (type or type/name), got ${JSON.stringify(id)}`);
    return undefined;
  }
  return id;
}

function running(host: Host | undefined, id: string): unknown {
  const extension = host?.extensions?.get(id);
  if (extension === undefined) throw new Error(`auth: authenticator extension "${id}" is not running (it must be configured and listed in service::extensions)`);
  return extension;
}

/** The running server authenticator `id` names; throws (the start fails) when there is none. */
export function serverAuthenticator(host: Host | undefined, id: string): ServerAuthenticator {
  const extension = running(host, id);
  if (!isServerAuthenticator(extension)) throw new Error(`auth: extension "${id}" is not a server authenticator`);
  return extension;
}

/** The running client authenticator `id` names; throws (the start fails) when there is none. */
export function clientAuthenticator(host: Host | undefined, id: string): ClientAuthenticator {
  const extension = running(host, id);
  if (!isClientAuthenticator(extension)) throw new Error(`auth: extension "${id}" is not a client authenticator`);
  return extension;
}
