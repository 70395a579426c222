import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

// podman for the image and compose tests (test/deploy/). scripts/install-peers.sh podman installs
// Debian's podman, runc, podman-compose and docker-compose, and builds the stand-in Node 20 base
// image (base images cannot be pulled on every test machine).

export const ROOT = path.resolve(__dirname, '..', '..', '..');
export const CONTAINERS_CONF = path.join(ROOT, 'scripts', 'podman', 'containers.conf');
/** The stand-in for node:20-bookworm-slim that install-peers.sh builds. */
export const NODE_BASE_IMAGE = 'localhost/spansieve-node-base:20';
export const MINBASE_IMAGE = 'localhost/spansieve-bookworm-minbase:latest';
export const SPANSIEVE_IMAGE = 'localhost/spansieve:test';

export const podmanEnv = (): NodeJS.ProcessEnv => ({ ...process.env, CONTAINERS_CONF });

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to its end; never throws for a non-zero exit (see `must`). */
export function run(cmd: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: options.env ?? podmanEnv(), cwd: options.cwd ?? ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
    child.stdin.end(options.input ?? '');
  });
}

/** Runs a command and returns its stdout; a non-zero exit throws with the command's stderr. */
export async function must(cmd: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}): Promise<string> {
  const result = await run(cmd, args, options);
  if (result.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${result.code}:\n${(result.stderr || result.stdout).slice(-4000)}`);
  return result.stdout;
}

export const podman = (...args: string[]): Promise<string> => must('podman', args);

function onPath(name: string): boolean {
  // /usr/sbin too: iptables lives there and is not on every user's PATH.
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin'];
  return dirs.some((dir) => dir !== '' && fs.existsSync(path.join(dir, name)));
}

/**
 * Throws a clear error unless podman and the stand-in base image are there: these tests do not
 * skip, install-peers.sh sets everything up.
 */
export async function requirePodman(tools: readonly string[] = []): Promise<void> {
  const fix = 'run `bash scripts/install-peers.sh podman` (npm test does)';
  const missing = ['podman', 'runc', ...tools].filter((tool) => !onPath(tool));
  if (missing.length > 0) throw new Error(`${missing.join(', ')} not installed: ${fix}`);
  const base = await run('podman', ['image', 'exists', NODE_BASE_IMAGE]);
  if (base.code !== 0) throw new Error(`the stand-in base image ${NODE_BASE_IMAGE} is missing (${base.stderr.trim() || `exit ${base.code}`}): ${fix}`);
}

/** A hash of what the Dockerfile copies (the .dockerignore allow-list) and of the base image. */
async function contextHash(): Promise<string> {
  const hash = createHash('sha256');
  const add = (file: string): void => {
    if (fs.statSync(file).isDirectory()) {
      for (const entry of fs.readdirSync(file).sort()) add(path.join(file, entry));
      return;
    }
    hash.update(`${path.relative(ROOT, file)}\0`).update(fs.readFileSync(file)).update('\0');
  };
  for (const entry of ['Dockerfile', '.dockerignore', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.image.json', 'scripts/build-page.js', 'src', 'proto', 'config']) add(path.join(ROOT, entry));
  hash.update((await podman('image', 'inspect', '--format', '{{.Id}}', NODE_BASE_IMAGE)).trim());
  return hash.digest('hex');
}

/**
 * Builds the repository's Dockerfile on the stand-in base, unless the image was already built
 * from the same files (a label holds their hash): even a build that podman takes entirely from its
 * layer cache costs half a minute here. flock serializes test files that build at the same time.
 */
export async function buildSpansieveImage(): Promise<{ seconds: number; built: boolean }> {
  const started = performance.now();
  const hash = await contextHash();
  const lock = path.join(process.env.TMPDIR ?? '/tmp', 'spansieve-podman-build.lock');
  // The image it replaces is removed, so that test runs do not pile up images.
  const script = [
    `[ "$(podman image inspect --format '{{index .Labels "spansieve.context"}}' ${SPANSIEVE_IMAGE} 2>/dev/null)" = ${hash} ] && exit 0`,
    `old=$(podman image inspect --format '{{.Id}}' ${SPANSIEVE_IMAGE} 2>/dev/null)`,
    `podman build --format docker --network host --pull=never --label spansieve.context=${hash} --build-arg NODE_IMAGE=${NODE_BASE_IMAGE} -t ${SPANSIEVE_IMAGE} "$0" >&2 || exit 1`,
    `[ -n "$old" ] && podman rmi "$old" >/dev/null 2>&1`,
    'echo built',
  ].join('\n');
  const out = await must('flock', [lock, 'sh', '-c', script, ROOT]);
  return { seconds: (performance.now() - started) / 1000, built: out.includes('built') };
}

/** Image size in bytes, as podman reports it. */
export async function imageSize(image: string): Promise<number> {
  return Number((await podman('image', 'inspect', '--format', '{{.Size}}', image)).trim());
}

export interface Listener {
  readonly address: string;
  readonly port: number;
}

/**
 * TCP listeners in a process's network namespace, read from the host's /proc/PID/net/tcp[6]
 * (needs no tool inside the image). Addresses are printed as in `ss`: 0.0.0.0, ::, 127.0.0.1, ::1, ...
 */
export function listeners(pid: number): Listener[] {
  const found: Listener[] = [];
  for (const file of ['tcp', 'tcp6']) {
    const lines = fs.readFileSync(`/proc/${pid}/net/${file}`, 'utf8').trim().split('\n').slice(1);
    for (const line of lines) {
      const fields = line.trim().split(/\s+/);
      if (fields[3] !== '0A') continue; // TCP_LISTEN
      const [hex, portHex] = fields[1]!.split(':') as [string, string];
      found.push({ address: file === 'tcp' ? ipv4(hex) : ipv6(hex), port: parseInt(portHex, 16) });
    }
  }
  return found;
}

function ipv4(hex: string): string {
  const bytes = Buffer.from(hex, 'hex');
  return [...bytes.reverse()].join('.');
}

function ipv6(hex: string): string {
  // Four 32-bit words, each in host (little-endian) byte order.
  const bytes = Buffer.alloc(16);
  for (let word = 0; word < 4; word++) Buffer.from(hex.slice(word * 8, word * 8 + 8), 'hex').reverse().copy(bytes, word * 4);
  if (bytes.every((b) => b === 0)) return '::';
  if (bytes.subarray(0, 15).every((b) => b === 0) && bytes[15] === 1) return '::1';
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${[...bytes.subarray(12)].join('.')}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return groups.join(':');
}

export const isLoopback = (address: string): boolean => address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
