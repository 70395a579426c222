import type * as http from 'node:http';
import type * as net from 'node:net';
import { parseHostPort } from '../config/reader';

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

export function closeServer(server: net.Server | http.Server | undefined): Promise<void> {
  if (!server || !server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    if ('closeIdleConnections' in server) server.closeIdleConnections();
  });
}

/** The port actually bound (useful when the config asked for port 0). */
export function boundPort(server: net.Server | http.Server): number {
  const address = server.address();
  return typeof address === 'object' && address !== null ? address.port : 0;
}
