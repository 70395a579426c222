import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type { Logger } from 'pino';
import { errorMessage } from '../../component/errors';
import type { Component, CreateSettings, ExtensionFactory } from '../../component/component';
import type { Node } from '../../config/reader';
import type { Batch } from '../../pdata/batch';
import type { QueueStorage, RecordCodec } from '../../component/storage';
import { SegmentQueue, realIo, type QueueIo } from './segment-queue';

// The Collector's file_storage extension, for exporters' persistent sending queues
// (`sending_queue: { storage: file_storage }`). It owns a directory, locked against a second
// process, and gives each exporter its own sub-directory of segment files.

export interface FileStorageConfig {
  readonly directory: string;
  /** How long start() waits for another live process's lock to go away. */
  readonly timeoutMs: number;
  readonly fsync: boolean;
  readonly createDirectory: boolean;
  readonly directoryPermissions: number;
  /** directory_permissions was set without create_directory (it then has no effect: warned at start). */
  readonly permissionsUnused?: boolean;
}

export const DEFAULT_DIRECTORY = '/var/lib/spansieve/file_storage';
export const LOCK_FILE = 'spansieve.lock';

const COMPACTION_KEYS = [
  'on_start',
  'on_rebound',
  'directory',
  'max_transaction_size',
  'rebound_needed_threshold_mib',
  'rebound_trigger_threshold_mib',
  'check_interval',
  'cleanup_on_start',
];

export function parseFileStorageConfig(node: Node): FileStorageConfig {
  const at = node.struct(['directory', 'timeout', 'fsync', 'create_directory', 'directory_permissions', 'compaction', 'recreate']);
  // The Collector's `recreate` (reopen its database from scratch) is accepted without effect: see the docs.
  at('recreate').boolean(false);
  const directory = at('directory').string(DEFAULT_DIRECTORY);
  if (directory === '') at('directory').report('must not be empty');
  const permissionsNode = at('directory_permissions');
  const permissionsText = permissionsNode.string('0750');
  let directoryPermissions = 0o750;
  if (/^0?[0-7]{3}$/.test(permissionsText)) directoryPermissions = parseInt(permissionsText, 8);
  else permissionsNode.report(`expected octal permissions such as "0750", got ${JSON.stringify(permissionsNode.value)}`);
  // Accepted so Collector configs load; segment files need no compaction (see the docs).
  const compaction = at('compaction').struct(COMPACTION_KEYS);
  compaction('on_start').boolean(false);
  compaction('on_rebound').boolean(false);
  compaction('cleanup_on_start').boolean(false);
  compaction('directory').string('');
  compaction('check_interval').duration(5000);
  for (const key of ['max_transaction_size', 'rebound_needed_threshold_mib', 'rebound_trigger_threshold_mib']) compaction(key).integer(0, 0);
  const createDirectory = at('create_directory').boolean(false);
  return {
    ...(permissionsNode.value !== undefined && !createDirectory ? { permissionsUnused: true } : {}),
    directory: path.resolve(directory || DEFAULT_DIRECTORY),
    timeoutMs: at('timeout').duration(1000),
    fsync: at('fsync').boolean(false),
    createDirectory,
    directoryPermissions,
  };
}

export class FileStorage implements Component, QueueStorage {
  /** The token in our lock file while we hold it. */
  private token: string | undefined;
  private refresher: NodeJS.Timeout | undefined;
  private lostLogged = false;
  private readonly open = new Map<string, { close(): Promise<void> }>();
  /** Tests replace the write path to inject ENOSPC or EIO. */
  io: QueueIo | undefined;

  constructor(
    private readonly settings: CreateSettings,
    readonly config: FileStorageConfig,
  ) {}

  async start(): Promise<void> {
    // Records are checksummed with zlib.crc32 (Node 20.15+); without it nothing could be written or read back.
    if (typeof zlib.crc32 !== 'function') throw new Error(`file_storage needs Node.js 20.15 or later (zlib.crc32); this is Node.js ${process.version}`);
    const { directory } = this.config;
    if (this.config.createDirectory) fs.mkdirSync(directory, { recursive: true, mode: this.config.directoryPermissions });
    let stat: fs.Stats;
    try {
      stat = fs.statSync(directory);
    } catch {
      throw new Error(`directory ${directory} does not exist; create it or set create_directory: true`);
    }
    if (!stat.isDirectory()) throw new Error(`${directory} is not a directory`);
    if (this.config.permissionsUnused) {
      this.settings.logger.warn({ directory }, 'file_storage: directory_permissions has no effect without create_directory: true (the directory already exists)');
    }
    await this.lock();
    this.settings.logger.info({ directory, fsync: this.config.fsync }, 'file storage ready');
  }

  async shutdown(): Promise<void> {
    await Promise.all([...this.open.values()].map((queue) => queue.close()));
    this.open.clear();
    const token = this.token;
    if (token === undefined) return;
    this.token = undefined;
    clearInterval(this.refresher);
    this.refresher = undefined;
    try {
      // Only our own lock: one taken over by another process is theirs now.
      if (readLock(this.lockPath)?.token === token) fs.rmSync(this.lockPath, { force: true });
    } catch (err) {
      this.settings.logger.warn({ err: (err as Error).message, lock: this.lockPath }, 'could not remove the lock file');
    }
  }

  directoryFor(componentId: string): string {
    return path.join(this.config.directory, `exporter_${queueName(componentId)}`);
  }

  openQueue<R = Batch>(componentId: string, logger: Logger, onCorrupt: (n: number) => void, codec?: RecordCodec<R>): SegmentQueue<R> {
    if (this.token === undefined) throw new Error(`file storage ${this.settings.id} is not started`);
    const name = queueName(componentId);
    if (this.open.has(name)) throw new Error(`file storage ${this.settings.id} already holds an open queue for ${componentId}`);
    const queue = new SegmentQueue<R>({
      dir: this.directoryFor(componentId),
      ...(codec ? { codec } : {}),
      fsync: this.config.fsync,
      logger,
      onCorrupt,
      // Looked up per write, so a test can make a running queue's writes fail and recover.
      io: {
        writev: (fd, buffers, position) => (this.io ?? realIo).writev(fd, buffers, position),
        fdatasync: (fd) => (this.io ?? realIo).fdatasync(fd),
      },
    });
    this.open.set(name, queue);
    return queue;
  }

  private get lockPath(): string {
    return path.join(this.config.directory, LOCK_FILE);
  }

  /**
   * A lease: the lock file holds a random token, the host, the pid namespace and the pid; the
   * holder touches its mtime every LOCK_REFRESH_MS. Another process takes it over only when it is
   * stale: not touched for LOCK_STALE_MS, or (fast path) its pid is not running in our own pid
   * namespace on our own host. A pid alone proves nothing across pid namespaces (two containers
   * sharing a volume are both pid 1), so "ours" means our token. Created atomically (written
   * beside, then hard-linked: link fails if the lock exists); a live lock is waited for up to
   * `timeout`, then start fails naming its holder.
   */
  private async lock(): Promise<void> {
    const lockPath = this.lockPath;
    const token = randomBytes(16).toString('hex');
    const mine: LockHolder = { token, host: os.hostname(), boot: bootId(), pidns: pidNamespace(), pid: process.pid };
    const temporary = `${lockPath}.${token}.tmp`;
    fs.writeFileSync(temporary, `${JSON.stringify(mine)}\n`, { mode: 0o600 });
    const deadline = Date.now() + this.config.timeoutMs;
    let holder: ReadLock | undefined;
    let retryAtOnce = true;
    // Immediate retries (the lock vanished, or we just removed a stale one) are few: then the deadline applies.
    let immediateLeft = 10;
    try {
      for (;;) {
        if (!retryAtOnce || immediateLeft-- <= 0) {
          if (Date.now() >= deadline) throw new Error(this.inUseMessage(holder));
          await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.min(100, this.config.timeoutMs))));
        }
        retryAtOnce = false;
        try {
          await fs.promises.link(temporary, lockPath);
          this.token = token;
          this.startRefresh();
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        holder = readLock(lockPath);
        if (holder === undefined) {
          retryAtOnce = true; // removed meanwhile
          continue;
        }
        const stale = staleReason(holder, mine);
        if (stale === undefined) continue;
        // Stale: move it aside, and take it over only if it is still the one we judged.
        const aside = `${lockPath}.stale.${token}`;
        try {
          await fs.promises.rename(lockPath, aside);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw err;
        }
        if (readLock(aside)?.text !== holder.text) {
          // Another process replaced the lock between our read and the rename: give it back.
          try {
            await fs.promises.link(aside, lockPath);
          } catch {
            // It took the lock again meanwhile.
          }
          await fs.promises.rm(aside, { force: true });
          continue;
        }
        await fs.promises.rm(aside, { force: true });
        this.settings.logger.warn({ lock: lockPath, pid: holder.pid, host: holder.host, reason: stale }, 'took over a stale file_storage lock');
        retryAtOnce = true;
      }
    } finally {
      fs.rmSync(temporary, { force: true });
    }
  }

  private inUseMessage(holder: ReadLock | undefined): string {
    const who = holder?.pid !== undefined ? `pid ${holder.pid}${holder.host ? ` on ${holder.host}` : ''}` : 'unknown holder';
    const age = holder ? `, refreshed ${Math.max(0, Math.round((Date.now() - holder.mtimeMs) / 1000))}s ago` : '';
    return (
      `directory ${this.config.directory} is in use by another process (${who}, lock file ${this.lockPath}${age}); ` +
      `two processes must not share a file_storage directory (a lock not refreshed for ${LOCK_STALE_MS / 1000}s is taken over)`
    );
  }

  /** Touches the lock so others see it is alive; notices (and logs) if another process took it. */
  private startRefresh(): void {
    this.refresher = setInterval(() => {
      const token = this.token;
      void (async () => {
        const text = await fs.promises.readFile(this.lockPath, 'utf8').catch(() => '');
        let holder: Partial<LockHolder> | undefined;
        try {
          holder = JSON.parse(text) as Partial<LockHolder>;
        } catch {
          holder = undefined;
        }
        if (this.token !== token || token === undefined) return;
        if (holder?.token !== token) {
          if (!this.lostLogged) this.settings.logger.error({ lock: this.lockPath, holder: holder?.pid, host: holder?.host }, 'file_storage lock was taken over by another process; two processes may now write the same queue');
          this.lostLogged = true;
          return;
        }
        const now = new Date();
        await fs.promises.utimes(this.lockPath, now, now);
      })().catch((err: unknown) => this.settings.logger.warn({ err: errorMessage(err), lock: this.lockPath }, 'could not refresh the file_storage lock'));
    }, LOCK_REFRESH_MS);
    this.refresher.unref();
  }
}

/** type/name -> type_name as the Collector names its files; anything else unusual is escaped, so two ids never share a directory. */
function queueName(componentId: string): string {
  return componentId.replace(/[^A-Za-z0-9._/-]/g, (c) => `~${c.codePointAt(0)!.toString(16)}`).replace('/', '_');
}

/** How often the holder touches its lock file. */
export const LOCK_REFRESH_MS = 2000;
/** A lock file not touched for this long is stale (its holder is gone or hung). */
export const LOCK_STALE_MS = 5 * LOCK_REFRESH_MS;

interface LockHolder {
  readonly token: string;
  readonly host: string;
  /** The kernel's boot id: unlike a host name, never the same on two machines. */
  readonly boot: string | undefined;
  readonly pidns: string | undefined;
  readonly pid: number;
}

interface ReadLock extends Partial<LockHolder> {
  readonly text: string;
  readonly mtimeMs: number;
}

/** The lock file's holder; undefined when there is no file. An unparsable one has only text and mtime. */
function readLock(file: string): ReadLock | undefined {
  try {
    const mtimeMs = fs.statSync(file).mtimeMs;
    const text = fs.readFileSync(file, 'utf8');
    try {
      const parsed = JSON.parse(text) as Partial<LockHolder>;
      return { ...parsed, text, mtimeMs };
    } catch {
      return { text, mtimeMs };
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Why the lock can be taken over, or undefined while its holder may be alive. */
function staleReason(holder: ReadLock, mine: LockHolder): string | undefined {
  const age = Date.now() - holder.mtimeMs;
  if (age > LOCK_STALE_MS) return `not refreshed for ${Math.round(age / 1000)}s`;
  // Only where a pid means the same process to us: same host and same pid namespace.
  const sameNamespace =
    holder.host === mine.host && mine.boot !== undefined && holder.boot === mine.boot && mine.pidns !== undefined && holder.pidns === mine.pidns;
  if (sameNamespace && typeof holder.pid === 'number' && holder.pid !== mine.pid && !pidAlive(holder.pid)) return 'its process is not running';
  return undefined;
}

function bootId(): string | undefined {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Linux's id of our pid namespace ("pid:[4026531836]"); undefined elsewhere. */
function pidNamespace(): string | undefined {
  try {
    return fs.readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, owned by someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export const fileStorageFactory: ExtensionFactory<FileStorageConfig> = {
  singleProcess: 'one directory takes one lease: several workers cannot share it',
  type: 'file_storage',
  kind: 'extension',
  parseConfig: parseFileStorageConfig,
  create: (settings, config) => new FileStorage(settings, config),
};
