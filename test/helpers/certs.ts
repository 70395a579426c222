import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

// Certificates for TLS tests, made with the openssl CLI in a temp dir: a CA, a server certificate
// for 127.0.0.1/localhost, a client certificate, the same from a second ("wrong") CA, and an
// expired client and server certificate from the right CA. EC P-256 keys: quick to make.

export interface Pair {
  readonly cert: string;
  readonly key: string;
}

export interface TestCerts {
  readonly dir: string;
  readonly ca: string;
  readonly server: Pair;
  readonly client: Pair;
  readonly wrongCa: string;
  /** Signed by the wrong CA. */
  readonly wrongServer: Pair;
  readonly wrongClient: Pair;
  /** Signed by the right CA, valid only in 2020. */
  readonly expiredServer: Pair;
  readonly expiredClient: Pair;
  /** Makes another server certificate from the right CA (for rotation), into `name`.pem/.key. */
  issueServer(name: string, cn: string, san?: string): Pair;
  remove(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(dir: string, name: string): void {
  openssl(dir, ['req', '-x509', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=spansieve test ${name}`]);
  fs.mkdirSync(path.join(dir, `${name}-db`));
  fs.writeFileSync(path.join(dir, `${name}-db`, 'index.txt'), '');
  fs.writeFileSync(path.join(dir, `${name}-db`, 'serial'), '01\n');
  fs.writeFileSync(
    path.join(dir, `${name}.cnf`),
    `[ca]\ndefault_ca = d\n[d]\ndatabase = ${name}-db/index.txt\nnew_certs_dir = ${name}-db\nserial = ${name}-db/serial\ndefault_md = sha256\npolicy = p\ncopy_extensions = copy\nunique_subject = no\n[p]\ncommonName = supplied\n`,
  );
}

function issue(dir: string, ca: string, name: string, cn: string, usage: 'serverAuth' | 'clientAuth', dates?: { start: string; end: string }, altNames = 'IP:127.0.0.1,DNS:localhost'): Pair {
  const san = usage === 'serverAuth' ? ['-addext', `subjectAltName=${altNames}`] : [];
  openssl(dir, ['req', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`, ...san, '-addext', `extendedKeyUsage=${usage}`]);
  const validity = dates ? ['-startdate', dates.start, '-enddate', dates.end] : ['-days', '2'];
  openssl(dir, ['ca', '-batch', '-notext', '-config', `${ca}.cnf`, '-cert', `${ca}.pem`, '-keyfile', `${ca}.key`, '-in', `${name}.csr`, '-out', `${name}.pem`, ...validity]);
  return { cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}.key`) };
}

export function makeTestCerts(): TestCerts {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spansieve-certs-'));
  makeCa(dir, 'ca');
  makeCa(dir, 'wrong-ca');
  const past = { start: '20200101000000Z', end: '20200102000000Z' };
  return {
    dir,
    ca: path.join(dir, 'ca.pem'),
    server: issue(dir, 'ca', 'server', 'localhost', 'serverAuth'),
    client: issue(dir, 'ca', 'client', 'client', 'clientAuth'),
    wrongCa: path.join(dir, 'wrong-ca.pem'),
    wrongServer: issue(dir, 'wrong-ca', 'wrong-server', 'localhost', 'serverAuth'),
    wrongClient: issue(dir, 'wrong-ca', 'wrong-client', 'client', 'clientAuth'),
    expiredServer: issue(dir, 'ca', 'expired-server', 'localhost', 'serverAuth', past),
    expiredClient: issue(dir, 'ca', 'expired-client', 'client', 'clientAuth', past),
    issueServer: (name, cn, san) => issue(dir, 'ca', name, cn, 'serverAuth', undefined, san),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
