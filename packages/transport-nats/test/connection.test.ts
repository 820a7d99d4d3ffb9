import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthenticationError, ConfigurationError, type ConnectionState, ConnectionError } from '@ktransport/broker';
import { waitFor } from '@ktransport/broker/testing';
import { NatsBroker } from '@ktransport/transport-nats';
import { ensureNats, fast, NATS_URL } from './helpers.js';
import { freePort, PrivateNats } from './servers.js';

const USER = 'kt-user';
const PASSWORD = 'kt-secret-p@ss';
const TOKEN = 'kt-token-s3cret';
const withPassword = new PrivateNats({ args: ['--user', USER, '--pass', PASSWORD] });
const withToken = new PrivateNats({ args: ['--auth', TOKEN] });

beforeAll(async () => {
  await ensureNats();
  await Promise.all([withPassword.start(), withToken.start()]);
}, 30_000);

afterAll(async () => {
  await Promise.all([withPassword.remove(), withToken.remove()]);
}, 30_000);

/** Connects, expects `connect()` to reject, and returns the error and the states seen. */
async function refused(broker: NatsBroker): Promise<{ error: unknown; states: ConnectionState[]; ms: number }> {
  const states: ConnectionState[] = [];
  broker.onStateChange((s) => states.push(s));
  const begun = Date.now();
  const error = await broker.connect().then(
    () => undefined,
    (e: unknown) => e,
  );
  return { error, states, ms: Date.now() - begun };
}

describe('NatsBroker connection', () => {
  it('connects with user and password from the URL (percent-encoded) and from the options', async () => {
    const port = withPassword.port;
    for (const broker of [
      new NatsBroker({ ...fast, url: `nats://${USER}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${port}` }),
      new NatsBroker({ ...fast, url: `nats://127.0.0.1:${port}`, username: USER, password: PASSWORD }),
    ]) {
      await broker.connect();
      expect(broker.state).toBe('connected');
      await broker.disconnect();
      expect(broker.state).toBe('closed');
    }
  });

  it('wrong credentials reject connect() with an AuthenticationError at once, without the password, and no reconnect loop', async () => {
    const broker = new NatsBroker({ ...fast, url: `nats://${USER}:wrong-${PASSWORD}@127.0.0.1:${withPassword.port}` });
    const { error, states, ms } = await refused(broker);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as AuthenticationError).retriable).toBe(false);
    expect((error as Error).message).toMatch(/refused the credentials/);
    expect((error as Error).message).not.toContain(PASSWORD);
    expect(ms).toBeLessThan(3_000);
    expect(states).toEqual(['connecting', 'disconnected']);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(broker.state).toBe('disconnected');
    // No credentials at all is refused the same way.
    const anonymous = await refused(new NatsBroker({ ...fast, url: `nats://127.0.0.1:${withPassword.port}` }));
    expect(anonymous.error).toBeInstanceOf(AuthenticationError);
  });

  it('token authentication: the token option and nats://token@host work, a wrong token is an AuthenticationError without the token', async () => {
    for (const broker of [
      new NatsBroker({ ...fast, url: `nats://127.0.0.1:${withToken.port}`, token: TOKEN }),
      new NatsBroker({ ...fast, url: `nats://${TOKEN}@127.0.0.1:${withToken.port}` }),
    ]) {
      await broker.connect();
      await broker.disconnect();
    }
    const { error } = await refused(new NatsBroker({ ...fast, url: `nats://127.0.0.1:${withToken.port}`, token: `${TOKEN}-wrong` }));
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as Error).message).not.toContain(TOKEN);
    const inUrl = await refused(new NatsBroker({ ...fast, url: `nats://wrong-${TOKEN}@127.0.0.1:${withToken.port}` }));
    expect(inUrl.error).toBeInstanceOf(AuthenticationError);
    expect((inUrl.error as Error).message).not.toContain(TOKEN);
    expect((inUrl.error as Error).message).toContain('***@127.0.0.1');
    // Several URLs: each one's secret is masked.
    const listed = await refused(
      new NatsBroker({
        ...fast,
        url: `nats://${USER}:wrong-${PASSWORD}@127.0.0.1:${withPassword.port},nats://${USER}:other-${PASSWORD}@127.0.0.1:${withPassword.port}`,
      }),
    );
    expect(listed.error).toBeInstanceOf(AuthenticationError);
    expect((listed.error as Error).message).not.toContain(PASSWORD);
  });

  it('an unreachable server rejects connect() with a ConnectionError promptly', async () => {
    const port = await freePort();
    const { error, states, ms } = await refused(new NatsBroker({ ...fast, url: `nats://127.0.0.1:${port}` }));
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).not.toBeInstanceOf(AuthenticationError);
    expect((error as ConnectionError).retriable).toBe(true);
    expect(ms).toBeLessThan(3_000);
    expect(states).toEqual(['connecting', 'disconnected']);
  });

  it('a comma-separated URL list: a dead first server is skipped', async () => {
    const dead = await freePort();
    const broker = new NatsBroker({ ...fast, url: `nats://127.0.0.1:${dead},${NATS_URL}` });
    await broker.connect();
    expect(broker.state).toBe('connected');
    await broker.disconnect();
  });

  it('connectTimeoutMs bounds a server that accepts TCP but never answers', async () => {
    const { createServer } = await import('node:net');
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const address = silent.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      const { error, ms } = await refused(new NatsBroker({ ...fast, url: `nats://127.0.0.1:${port}`, connectTimeoutMs: 800 }));
      expect(error).toBeInstanceOf(ConnectionError);
      expect(ms).toBeLessThan(2_500);
    } finally {
      silent.close();
    }
  });

  it('a server without JetStream rejects connect() with a ConnectionError saying so', async () => {
    const plain = new PrivateNats({ jetstream: false });
    await plain.start();
    try {
      const { error, states } = await refused(new NatsBroker({ ...fast, url: plain.url }));
      expect(error).toBeInstanceOf(ConnectionError);
      expect((error as Error).message).toMatch(/jetstream/i);
      expect(states).toEqual(['connecting', 'disconnected']);
    } finally {
      await plain.remove();
    }
  });

  it('refuses bad options in the constructor', () => {
    expect(() => new NatsBroker({ url: 'http://127.0.0.1:4222' })).toThrow(ConfigurationError);
    expect(() => new NatsBroker({ url: 'not a url' })).toThrow(ConfigurationError);
    expect(() => new NatsBroker({ url: 'nats://' })).toThrow(ConfigurationError);
    expect(() => new NatsBroker({ ackWaitMs: 0 })).toThrow(ConfigurationError);
    expect(() => new NatsBroker({ maxAckPending: 0 })).toThrow(ConfigurationError);
    expect(() => new NatsBroker({ streams: [{ name: 'a.b', subjects: ['x'] }] })).toThrow(ConfigurationError);
    expect(() => new NatsBroker({ streams: [{ name: 'ok', subjects: [] }] })).toThrow(ConfigurationError);
    expect(() => new NatsBroker({ password: 'x' })).toThrow(ConfigurationError);
  });

  it('reports reconnecting promptly when the server goes away and connected when it is back', async () => {
    const server = new PrivateNats();
    await server.start();
    const broker = new NatsBroker({ ...fast, url: server.url });
    const states: ConnectionState[] = [];
    broker.onStateChange((s) => states.push(s));
    try {
      await broker.connect();
      await server.stop('SIGKILL');
      await waitFor(
        () => broker.state === 'reconnecting',
        2_000,
        () => `state ${broker.state}`,
      );
      await server.start();
      await waitFor(
        () => broker.state === 'connected',
        5_000,
        () => `state ${broker.state}`,
      );
      expect(states).toEqual(['connecting', 'connected', 'reconnecting', 'connected']);
    } finally {
      await broker.disconnect();
      await server.remove();
    }
  });
});
