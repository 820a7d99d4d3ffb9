import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * Plumbing between a client and a real Mosquitto, for what Mosquitto itself
 * cannot do: a TCP proxy that can cut or freeze connections (last will,
 * keep-alive, connect timeout, lost connections).
 */
export interface Relay {
  readonly port: number;
  close(): Promise<void>;
}

export interface TcpProxy extends Relay {
  /** Destroys every open connection (the broker sees the client vanish, no DISCONNECT). */
  cut(): void;
  /** Stops relaying bytes on the open connections (both directions) while keeping them open; new connections work. */
  freeze(): void;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (typeof address === 'object' && address) resolve(address.port);
      else reject(new Error('no port'));
    });
  });
}

function closer(server: Server, sockets: Set<Socket>): () => Promise<void> {
  return () => {
    for (const socket of sockets) socket.destroy();
    return new Promise((resolve) => server.close(() => resolve()));
  };
}

/** A TCP proxy to 127.0.0.1:target; with `target` undefined it accepts and never answers. */
export async function tcpProxy(target: number | undefined): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const frozen = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    if (target === undefined) return;
    const upstream = createConnection({ host: '127.0.0.1', port: target });
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.on('data', (chunk) => void (frozen.has(client) || upstream.write(chunk)));
    upstream.on('data', (chunk) => void (frozen.has(client) || client.write(chunk)));
  });
  const port = await listen(server);
  return {
    port,
    cut: () => {
      for (const socket of sockets) socket.destroy();
    },
    freeze: () => {
      for (const socket of sockets) frozen.add(socket);
    },
    close: closer(server, sockets),
  };
}
