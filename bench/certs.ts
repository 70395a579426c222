import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ServerTls } from './systems';

// The TLS transports' certificates, made at bench start with the openssl CLI (Node has no API to
// issue X.509 certificates): a CA the load generator trusts and a server certificate for
// 127.0.0.1 signed by it, which every system under test serves. EC P-256 keys, as in the tests
// (test/helpers/certs.ts, which makes many more for its cases).

export interface BenchCerts extends ServerTls {
  readonly caFile: string;
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** Writes ca.pem, server.pem and server.key into `dir` (the run's temporary directory). */
export function makeBenchCerts(dir: string): BenchCerts {
  fs.mkdirSync(dir, { recursive: true });
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    openssl(['req', '-x509', ...KEY, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=spansieve bench CA']);
    // `req -x509 -CA` (OpenSSL 3.0+) issues the leaf from the CA in one step.
    openssl([
      'req', '-x509', ...KEY, '-keyout', 'server.key', '-out', 'server.pem', '-days', '2', '-subj', '/CN=localhost',
      '-CA', 'ca.pem', '-CAkey', 'ca.key',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-addext', 'extendedKeyUsage=serverAuth',
      '-addext', 'basicConstraints=critical,CA:FALSE',
    ]);
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`cannot make the TLS transports' certificates with openssl (3.0 or later needed): ${stderr || (err as Error).message}`, { cause: err });
  }
  return { caFile: path.join(dir, 'ca.pem'), certFile: path.join(dir, 'server.pem'), keyFile: path.join(dir, 'server.key') };
}
