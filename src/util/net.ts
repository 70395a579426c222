import * as fs from 'node:fs';
import type * as http from 'node:http';
import type * as net from 'node:net';

/** Listens on `host:port`; rejects with a message naming the address when it is taken. */
export function listen(server: net.Server | http.Server, address: string): Promise<void> {
  const parsed = parseHostPort(address);
  if (!parsed) return Promise.reject(new Error(`invalid listen address ${JSON.stringify(address)}`));
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(new Error(`cannot listen on ${address}: ${err.code ?? err.message}`));
    };
    server.once('error', onError);
    server.listen(parsed.port, parsed.host || undefined, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** How long closeServer lets requests in flight finish before their connections are destroyed. */
const CLOSE_GRACE_MS = 1000;

/**
 * Stops accepting, closes idle connections at once and destroys the rest after CLOSE_GRACE_MS, so
 * a client that stalls (a half-sent request) cannot hold a shutdown up.
 */
export function closeServer(server: net.Server | http.Server | undefined): Promise<void> {
  if (!server || !server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    const force = 'closeAllConnections' in server ? setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS) : undefined;
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    if ('closeIdleConnections' in server) server.closeIdleConnections();
  });
}

/** The port actually bound (useful when the config asked for port 0). */
export function boundPort(server: net.Server | http.Server): number {
  const address = server.address();
  return typeof address === 'object' && address !== null ? address.port : 0;
}

/** fds kept free for everything that is not an inbound connection: health check, exporters, files. */
const FD_RESERVE_MIN = 32;
const FD_RESERVE_FRACTION = 0.05;
/** /proc/self/fd is read again at most this often, and only when the estimate is near the limit. */
const FD_RECOUNT_MS = 200;

/**
 * Tells whether one more inbound connection fits under the soft RLIMIT_NOFILE, leaving a reserve,
 * so a flood of idle connections cannot take the fds the open connections, the health check and
 * the exporters need. Counts cheaply: the receivers' own connections are tracked, the rest of the
 * process's fds are counted from /proc/self/fd only when the estimate comes near the limit.
 */
export class FdGuard {
  /** Inbound connections open on every guarded server. */
  private tracked = 0;
  /** fds that are not tracked connections, as of the last count. */
  private others = 0;
  private countedAt = -Infinity;
  private readonly threshold: number;

  constructor(readonly limit: number = softFdLimit()) {
    this.threshold = Number.isFinite(limit) ? limit - Math.max(FD_RESERVE_MIN, Math.ceil(limit * FD_RESERVE_FRACTION)) : Infinity;
    this.recount();
  }

  /** Whether a connection just accepted may stay; it is counted when it may. */
  admit(): boolean {
    if (this.threshold === Infinity) {
      this.tracked++;
      return true;
    }
    if (this.tracked + this.others + 1 > this.threshold * 0.8) this.recount();
    // The just-accepted socket already holds an fd, counted in `others` by a recount.
    if (this.tracked + this.others > this.threshold) return false;
    this.tracked++;
    return true;
  }

  release(): void {
    this.tracked--;
  }

  private recount(): void {
    const now = performance.now();
    if (now - this.countedAt < FD_RECOUNT_MS) return;
    this.countedAt = now;
    const open = openFdCount();
    if (open !== undefined) this.others = Math.max(0, open - this.tracked);
  }
}

let sharedGuard: FdGuard | undefined;

/** One guard for the whole process: the fd limit is the process's. */
export function processFdGuard(): FdGuard {
  sharedGuard ??= new FdGuard();
  return sharedGuard;
}

/** The soft RLIMIT_NOFILE from /proc/self/limits; Infinity when unknown or unlimited. */
export function softFdLimit(): number {
  try {
    const text = fs.readFileSync('/proc/self/limits', 'utf8');
    const match = /^Max open files\s+(\S+)/m.exec(text);
    const value = match ? Number(match[1]) : NaN;
    return Number.isFinite(value) && value > 0 ? value : Infinity;
  } catch {
    return Infinity;
  }
}

function openFdCount(): number | undefined {
  try {
    return fs.readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

export interface ConnectionLimits {
  /** At most this many connections open at once on this server; 0: no limit of its own. */
  readonly maxConnections: number;
  readonly guard: FdGuard;
  /** Told when a connection is closed at once because a limit was reached. */
  readonly onRefused?: (reason: 'max_connections' | 'fd_limit') => void;
}

/**
 * Keeps the set of the server's open sockets and closes a new connection at once when it would pass
 * max_connections or come too near the fd limit; the open ones go on being served.
 */
export function trackConnections(server: net.Server, limits: ConnectionLimits): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  // Prepended, so a refused socket is destroyed before the server sets up a parser or session.
  server.prependListener('connection', (socket: net.Socket) => {
    const reason = limits.maxConnections > 0 && sockets.size >= limits.maxConnections ? 'max_connections' : !limits.guard.admit() ? 'fd_limit' : undefined;
    if (reason) {
      // A reset closes the fd at once, also on an HTTP/2 server (where destroy() alone does not).
      socket.resetAndDestroy();
      limits.onRefused?.(reason);
      return;
    }
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      limits.guard.release();
    });
  });
  return sockets;
}

/** `host:port` or `[v6]:port`; the host may be empty (all interfaces). */
export function parseHostPort(value: string): { host: string; port: number } | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s/[\]]*)):(\d{1,5})$/.exec(value);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  return { host: match[1] ?? match[2] ?? '', port };
}
