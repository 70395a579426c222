import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import type { Component, CreateSettings, ExtensionFactory } from '../../component/component';
import type { Node } from '../../config/reader';
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
  const at = node.struct(['directory', 'timeout', 'fsync', 'create_directory', 'directory_permissions', 'compaction']);
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
  return {
    directory: path.resolve(directory || DEFAULT_DIRECTORY),
    timeoutMs: at('timeout').duration(1000),
    fsync: at('fsync').boolean(false),
    createDirectory: at('create_directory').boolean(false),
    directoryPermissions,
  };
}

/** An extension that can hold exporters' persistent queues (what `sending_queue.storage` names). */
export interface QueueStorage {
  openQueue(componentId: string, logger: Logger, onCorrupt: (n: number) => void): SegmentQueue;
}

export function isQueueStorage(component: unknown): component is QueueStorage {
  return typeof (component as Partial<QueueStorage> | undefined)?.openQueue === 'function';
}

export class FileStorage implements Component, QueueStorage {
  private locked = false;
  private readonly open = new Map<string, SegmentQueue>();
  /** Tests replace the write path to inject ENOSPC or EIO. */
  io: QueueIo | undefined;

  constructor(
    private readonly settings: CreateSettings,
    readonly config: FileStorageConfig,
  ) {}

  async start(): Promise<void> {
    const { directory } = this.config;
    if (this.config.createDirectory) fs.mkdirSync(directory, { recursive: true, mode: this.config.directoryPermissions });
    let stat: fs.Stats;
    try {
      stat = fs.statSync(directory);
    } catch {
      throw new Error(`directory ${directory} does not exist; create it or set create_directory: true`);
    }
    if (!stat.isDirectory()) throw new Error(`${directory} is not a directory`);
    await this.lock();
    this.settings.logger.info({ directory, fsync: this.config.fsync }, 'file storage ready');
  }

  async shutdown(): Promise<void> {
    await Promise.all([...this.open.values()].map((queue) => queue.close()));
    this.open.clear();
    if (!this.locked) return;
    this.locked = false;
    try {
      fs.rmSync(this.lockPath, { force: true });
    } catch (err) {
      this.settings.logger.warn({ err: (err as Error).message, lock: this.lockPath }, 'could not remove the lock file');
    }
  }

  openQueue(componentId: string, logger: Logger, onCorrupt: (n: number) => void): SegmentQueue {
    if (!this.locked) throw new Error(`file storage ${this.settings.id} is not started`);
    // type/name -> type_name as the Collector names its files; anything else unusual is escaped, so two ids never share a directory.
    const name = componentId.replace(/[^A-Za-z0-9._/-]/g, (c) => `~${c.codePointAt(0)!.toString(16)}`).replace('/', '_');
    if (this.open.has(name)) throw new Error(`file storage ${this.settings.id} already holds an open queue for ${componentId}`);
    const queue = new SegmentQueue({
      dir: path.join(this.config.directory, `exporter_${name}`),
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
   * Creates the lock file holding this pid, atomically (written beside, then hard-linked: link
   * fails if the lock exists). A lock whose pid is not running is stale and taken over; a live
   * one is waited for up to `timeout`, then start fails with who holds it.
   */
  private async lock(): Promise<void> {
    const lockPath = this.lockPath;
    const temporary = `${lockPath}.${process.pid}.tmp`;
    fs.writeFileSync(temporary, `${process.pid}\n`);
    const deadline = Date.now() + this.config.timeoutMs;
    try {
      for (;;) {
        try {
          fs.linkSync(temporary, lockPath);
          this.locked = true;
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        const holder = readLockPid(lockPath);
        if (holder === undefined) continue; // removed meanwhile: try again
        if (holder !== process.pid && pidAlive(holder)) {
          if (Date.now() >= deadline) {
            throw new Error(`directory ${this.config.directory} is in use by another process (pid ${holder}, lock file ${lockPath}); two processes must not share a file_storage directory`);
          }
          await new Promise((resolve) => setTimeout(resolve, Math.min(100, this.config.timeoutMs)));
          continue;
        }
        // Stale (its process is gone, or it is ours from an earlier run of this process): take it over.
        const aside = `${lockPath}.stale.${process.pid}`;
        try {
          fs.renameSync(lockPath, aside);
        } catch {
          continue;
        }
        if (readLockPid(aside) !== holder) {
          // Another process replaced the lock between our read and the rename: give it back.
          try {
            fs.linkSync(aside, lockPath);
          } catch {
            // It took the lock again meanwhile.
          }
          fs.rmSync(aside, { force: true });
          continue;
        }
        fs.rmSync(aside, { force: true });
        this.settings.logger.warn({ lock: lockPath, pid: holder }, 'took over a stale file_storage lock (its process is not running)');
      }
    } finally {
      fs.rmSync(temporary, { force: true });
    }
  }
}

/** The pid in a lock file; NaN when unreadable, undefined when there is no file. */
function readLockPid(file: string): number | undefined {
  try {
    return Number.parseInt(fs.readFileSync(file, 'utf8').trim(), 10);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return Number.NaN;
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
  type: 'file_storage',
  kind: 'extension',
  parseConfig: parseFileStorageConfig,
  create: (settings, config) => new FileStorage(settings, config),
};
