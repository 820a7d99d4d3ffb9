import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { AuthenticationError, ConfigurationError, ConnectionError } from '@ktransport/broker';
import { AmqpBroker } from '@ktransport/transport-amqp';
import { afterEach, describe, expect, it } from 'vitest';
import { outcome, SHARED_URL, sleep, states } from './helpers.js';
import { freePort } from './rabbitmq.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
});

/** A TCP server that accepts connections and never answers (a broker that hangs). */
async function silentServer(): Promise<number> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  server.on('close', () => {
    for (const socket of sockets) socket.destroy();
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  servers.push(server);
  const close = server.close.bind(server);
  server.close = (callback) => {
    for (const socket of sockets) socket.destroy();
    return close(callback);
  };
  return port;
}

describe('connecting', () => {
  it('rejects bad options in the constructor with a ConfigurationError that shows no password', () => {
    const make = (options: ConstructorParameters<typeof AmqpBroker>[0]) => () => new AmqpBroker(options);
    expect(make({ url: 'mqtt://u:hunter22@127.0.0.1' })).toThrow(ConfigurationError);
    expect(make({ url: 'mqtt://u:hunter22@127.0.0.1' })).not.toThrow(/hunter22/);
    expect(make({ url: 'not a url :// u:hunter22@' })).toThrow(ConfigurationError);
    expect(make({ url: 'amqp://127.0.0.1', tls: { rejectUnauthorized: false } })).toThrow(/amqps/);
    expect(make({ exchange: '' })).toThrow(ConfigurationError);
    for (const name of [
      'heartbeatSeconds',
      'connectTimeoutMs',
      'reconnectPeriodMs',
      'publishTimeoutMs',
      'prefetch',
      'maxMessageBytes',
      'redeliveryDelayMs',
    ] as const) {
      expect(make({ [name]: -1 }), name).toThrow(ConfigurationError);
    }
    expect(make({ prefetch: 70_000 })).toThrow(ConfigurationError);
  });

  it('an unreachable broker fails connect() with a retriable ConnectionError, and stays disconnected', async () => {
    const port = await freePort();
    const broker = new AmqpBroker({ url: `amqp://guest:hunter22@127.0.0.1:${port}`, tracing: false, metrics: false });
    const seen = states(broker);
    const error = await outcome(broker.connect());
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).retriable).toBe(true);
    expect(String(error)).not.toMatch(/hunter22/);
    await sleep(300);
    expect(seen).toEqual(['disconnected', 'connecting', 'disconnected']);
  });

  it('connectTimeoutMs bounds a connection to a broker that never answers', async () => {
    const port = await silentServer();
    const broker = new AmqpBroker({ url: `amqp://guest:guest@127.0.0.1:${port}`, connectTimeoutMs: 300, tracing: false, metrics: false });
    const started = Date.now();
    const error = await outcome(broker.connect());
    const took = Date.now() - started;
    expect(error).toBeInstanceOf(ConnectionError);
    expect(String(error)).toMatch(/connectTimeoutMs \(300 ms\)/);
    expect(took).toBeGreaterThanOrEqual(280);
    expect(took).toBeLessThan(3_000);
  });

  it('wrong credentials fail connect() with an AuthenticationError (not retriable), without retrying', async () => {
    const url = new URL(SHARED_URL);
    url.password = 'not-the-password';
    const broker = new AmqpBroker({ url: url.toString(), reconnectPeriodMs: 50, tracing: false, metrics: false });
    const seen = states(broker);
    const error = await outcome(broker.connect());
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as AuthenticationError).retriable).toBe(false);
    expect(String(error)).toMatch(/ACCESS_REFUSED|ACCESS-REFUSED/);
    expect(String(error)).not.toMatch(/not-the-password/);
    await sleep(300);
    expect(seen).toEqual(['disconnected', 'connecting', 'disconnected']);
  });
});

/** A TCP proxy to the machine's RabbitMQ that can stop carrying bytes without closing anything (a silent network). */
async function freezableProxy(): Promise<{ port: number; freeze: () => void; thaw: () => void }> {
  const target = new URL(SHARED_URL);
  let frozen = false;
  const pairs = new Set<[Socket, Socket]>();
  const server = createServer((client) => {
    if (frozen) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: target.hostname, port: Number(target.port || 5672) });
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.on('data', (chunk: Buffer) => void (frozen || upstream.write(chunk)));
    upstream.on('data', (chunk: Buffer) => void (frozen || client.write(chunk)));
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  server.on('close', () => {
    for (const [a, b] of pairs) {
      a.destroy();
      b.destroy();
    }
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  servers.push(server);
  return {
    port,
    freeze: () => void (frozen = true),
    thaw: () => {
      frozen = false;
      // What was cut off stays cut off: the frozen connections are closed, new ones go through.
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
    },
  };
}

describe('the vhost from the URL', () => {
  it('/%2F names the vhost "/", the one a URL without a path opens', async () => {
    const url = new URL(SHARED_URL);
    url.pathname = '/%2F';
    const broker = new AmqpBroker({ url: url.toString(), tracing: false, metrics: false });
    await broker.connect();
    await broker.publish(`kta-vhost-${process.pid}`, 1);
    await broker.disconnect();
  });
});

describe('heartbeats', () => {
  it('heartbeatSeconds: a connection that goes silent is taken as lost within about two periods, and opened again', async () => {
    const proxy = await freezableProxy();
    const url = new URL(SHARED_URL);
    url.port = String(proxy.port);
    const broker = new AmqpBroker({ url: url.toString(), heartbeatSeconds: 1, reconnectPeriodMs: 200, tracing: false, metrics: false });
    await broker.connect();
    try {
      const seen = states(broker);
      await sleep(1_500);
      expect(seen, 'heartbeats keep an idle connection up').toEqual(['connected']);
      const frozen = Date.now();
      proxy.freeze();
      while (broker.state === 'connected' && Date.now() - frozen < 10_000) await sleep(50);
      const noticed = Date.now() - frozen;
      expect(broker.state).toBe('reconnecting');
      expect(noticed).toBeGreaterThanOrEqual(1_000);
      expect(noticed).toBeLessThan(4_000);
      proxy.thaw();
      const thawed = Date.now();
      while (broker.state !== 'connected' && Date.now() - thawed < 10_000) await sleep(50);
      expect(broker.state).toBe('connected');
      await broker.publish(`kta-heartbeat-${process.pid}`, 1);
    } finally {
      await broker.disconnect();
    }
  });

  it('heartbeatSeconds: 0 asks for no heartbeats: a silent connection is not noticed', async () => {
    const proxy = await freezableProxy();
    const url = new URL(SHARED_URL);
    url.port = String(proxy.port);
    const broker = new AmqpBroker({ url: url.toString(), heartbeatSeconds: 0, tracing: false, metrics: false });
    await broker.connect();
    const seen = states(broker);
    proxy.freeze();
    await sleep(2_500);
    expect(seen).toEqual(['connected']);
    // The frozen connection is cut now: disconnect() does not wait for an answer that cannot come.
    proxy.thaw();
    const closing = Date.now();
    await broker.disconnect().catch(() => undefined);
    expect(Date.now() - closing).toBeLessThan(3_000);
  });
});
