import * as net from 'node:net';
import * as tls from 'node:tls';
import { H2Connection, type H2ConnectionOptions, type H2Handler } from './connection';

/** A listening HTTP/2 server (prior knowledge over TCP, or TLS with ALPN h2) and its connections. */
export interface H2Server {
  readonly server: net.Server;
  readonly connections: Set<H2Connection>;
  /** GOAWAY to every connection, then the listener closes once they have ended. */
  close(): Promise<void>;
}

/**
 * `onConnection` runs for each new connection before it reads anything (to set its hooks). A
 * socket already destroyed by another 'connection' listener (a connection limit) gets none.
 */
export function createH2Server(
  handler: H2Handler,
  options: H2ConnectionOptions = {},
  tlsOptions?: tls.TlsOptions,
  onConnection?: (connection: H2Connection) => void,
): H2Server {
  const connections = new Set<H2Connection>();
  const attach = (socket: net.Socket) => {
    if (socket.destroyed) return;
    const connection = new H2Connection(socket, handler, options);
    connections.add(connection);
    connection.onClose = () => connections.delete(connection);
    onConnection?.(connection);
  };
  const server = tlsOptions
    ? tls.createServer({ ...tlsOptions, ALPNProtocols: ['h2'] }, (socket) => {
        // Without ALPN h2 the client does not speak HTTP/2 to us (RFC 9113 3.2).
        if (socket.alpnProtocol !== 'h2') socket.destroy();
        else attach(socket);
      })
    : net.createServer(attach);
  return {
    server,
    connections,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const connection of connections) connection.close();
    }),
  };
}
