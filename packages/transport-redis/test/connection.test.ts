import { AuthenticationError, type ConnectionState, ConnectionError, DrainTimeoutError, PublishError, TimeoutError } from '@ktransport/broker';
import { RedisBroker, type RedisLogEntry, RedisReplyError } from '@ktransport/transport-redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, open, outcome, raw, sleep, topic, waitFor } from './helpers.js';
import { freePort, PrivateRedis } from './redis.js';

let secured: PrivateRedis;
let plain: PrivateRedis;
beforeAll(async () => {
  [secured, plain] = await Promise.all([PrivateRedis.start({ persistent: false, password: 's3cret-pw' }), PrivateRedis.start({ persistent: true })]);
});
afterAll(async () => {
  await Promise.all([secured?.destroy(), plain?.destroy()]);
});

describe('credentials', () => {
  it('rejects a wrong password with an AuthenticationError at once, masks it, and does not keep trying', async () => {
    const broker = new RedisBroker({ url: `redis://:wrong-pw@127.0.0.1:${secured.port}`, tracing: false, metrics: false });
    const seen: ConnectionState[] = [];
    broker.onStateChange((s) => void seen.push(s));
    const begun = Date.now();
    const error = await outcome(broker.connect());
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as AuthenticationError).retriable).toBe(false);
    expect((error as Error).message).toMatch(/WRONGPASS/);
    expect((error as Error).message).not.toContain('wrong-pw');
    expect(Date.now() - begun).toBeLessThan(2_000);
    const client = await raw(`redis://:s3cret-pw@127.0.0.1:${secured.port}`);
    const before = String(await client.sendCommand(['INFO', 'stats']));
    await sleep(500);
    const after = String(await client.sendCommand(['INFO', 'stats']));
    const connections = (info: string): number => Number(/total_connections_received:(\d+)/.exec(info)?.[1]);
    // Only the INFO client's own connection: nothing reconnects after the refusal.
    expect(connections(after)).toBe(connections(before));
    expect(seen).toEqual(['connecting', 'disconnected']);
    expect(broker.state).toBe('disconnected');
  });

  it('rejects a missing password (NOAUTH) with an AuthenticationError', async () => {
    const broker = new RedisBroker({ url: secured.url, tracing: false, metrics: false });
    const error = await outcome(broker.connect());
    expect(error).toBeInstanceOf(AuthenticationError);
  });

  it('connects with the right password and the database of the URL', async () => {
    const t = topic('db');
    const broker = await open({ url: `redis://default:s3cret-pw@127.0.0.1:${secured.port}/3` });
    await broker.publish(t, { n: 1 });
    const client = await raw(`redis://:s3cret-pw@127.0.0.1:${secured.port}/3`);
    expect(await client.sendCommand(['XLEN', t])).toBe(1);
    const db0 = await raw(`redis://:s3cret-pw@127.0.0.1:${secured.port}/0`);
    expect(await db0.sendCommand(['EXISTS', t])).toBe(0);
  });
});

describe('reaching Redis', () => {
  it('rejects with a ConnectionError within connectTimeoutMs when nothing listens', async () => {
    const port = await freePort();
    const broker = new RedisBroker({ url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 700, tracing: false, metrics: false });
    const begun = Date.now();
    const error = await outcome(broker.connect());
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).retriable).toBe(true);
    expect(Date.now() - begun).toBeGreaterThanOrEqual(600);
    expect(Date.now() - begun).toBeLessThan(3_000);
  });

  it('reports reconnecting while Redis is away, fails publishes then with retriable errors, and reads again after', async () => {
    const t = topic('outage');
    const broker = await open({ url: plain.url, reconnectDelayMs: 50 });
    const seen: ConnectionState[] = [];
    broker.onStateChange((s) => void seen.push(s));
    const got = new Set<number>();
    await broker.subscribe<{ n: number }>(t, (m) => void got.add(m.body.n), { group: 'g' });
    const plainGot = new Set<number>();
    await broker.subscribe<{ n: number }>(t, (m) => void plainGot.add(m.body.n));
    await broker.publish(t, { n: 1 });
    await plain.stop();
    await waitFor(
      () => broker.state === 'reconnecting',
      2_000,
      () => `state ${broker.state}`,
    );
    const failed = await outcome(broker.publish(t, { n: 2 }));
    expect(failed).toBeInstanceOf(PublishError);
    expect((failed as PublishError).retriable).toBe(true);
    await plain.start();
    await waitFor(
      () => broker.state === 'connected',
      5_000,
      () => `state ${broker.state}`,
    );
    await broker.publish(t, { n: 3 });
    await waitFor(
      () => got.has(3) && plainGot.has(3),
      10_000,
      () => `group ${[...got].join(',')} plain ${[...plainGot].join(',')}`,
    );
    expect(got.has(1)).toBe(true);
    expect(seen).toEqual(['reconnecting', 'connected']);
  });

  it('waits reconnectDelayMs before the first reconnect attempt', async () => {
    const broker = await open({ url: plain.url, reconnectDelayMs: 2_500 });
    await plain.stop();
    await waitFor(
      () => broker.state === 'reconnecting',
      2_000,
      () => `state ${broker.state}`,
    );
    const lost = Date.now();
    await plain.start();
    await sleep(1_000);
    // Redis answers again, but the first attempt is due only 2.5 s after the loss.
    expect(broker.state).toBe('reconnecting');
    await waitFor(
      () => broker.state === 'connected',
      6_000,
      () => `state ${broker.state}`,
    );
    expect(Date.now() - lost).toBeGreaterThanOrEqual(2_000);
  });

  it('rejects a publish Redis does not answer within publishTimeoutMs with a retriable TimeoutError', async () => {
    const t = topic('timeout');
    const broker = await open({ url: plain.url, publishTimeoutMs: 300 });
    const client = await raw(plain.url);
    await client.sendCommand(['CLIENT', 'PAUSE', '1500', 'WRITE']);
    const begun = Date.now();
    const error = await outcome(broker.publish(t, { n: 1 }));
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as TimeoutError).retriable).toBe(true);
    expect(Date.now() - begun).toBeLessThan(1_200);
    await sleep(1_300);
    await broker.publish(t, { n: 2 });
    expect(broker.state).toBe('connected');
  });
});

describe('error replies', () => {
  it('rejects a publish Redis refuses for memory (OOM) with a retriable PublishError naming the reply', async () => {
    const t = topic('oom');
    const broker = await open({ url: plain.url });
    const client = await raw(plain.url);
    await client.sendCommand(['CONFIG', 'SET', 'maxmemory', '1']);
    try {
      const error = await outcome(broker.publish(t, { n: 1 }));
      expect(error).toBeInstanceOf(PublishError);
      expect((error as PublishError).retriable).toBe(true);
      expect((error as PublishError).cause).toBeInstanceOf(RedisReplyError);
      expect(((error as PublishError).cause as RedisReplyError).reply).toBe('OOM');
      expect(broker.state).toBe('connected');
    } finally {
      await client.sendCommand(['CONFIG', 'SET', 'maxmemory', '0']);
    }
    await broker.publish(t, { n: 2 });
  });
});

describe('failing reads', () => {
  it('logs a read that fails (WRONGTYPE), backs off instead of looping, and reads again once the key is a stream', async () => {
    const t = topic('read-fails');
    const logged: RedisLogEntry[] = [];
    // A private server: INFO commandstats counts every client's reads, and other test files read the shared one.
    const broker = await open({ url: plain.url, logger: (entry) => void logged.push(entry) });
    const got: number[] = [];
    await broker.subscribe<{ n: number }>(t, (m) => void got.push(m.body.n), { group: 'g' });
    const client = await raw(plain.url);
    await client.sendCommand(['DEL', t]);
    await client.sendCommand(['SET', t, 'not a stream']);
    await eventually(
      () => Promise.resolve(logged.length > 0),
      3_000,
      () => 'nothing logged',
    );
    const stats = async (): Promise<number> =>
      Number(/cmdstat_xreadgroup:calls=(\d+)/.exec(String(await client.sendCommand(['INFO', 'commandstats'])))?.[1] ?? 0);
    const before = await stats();
    await sleep(1_000);
    // Backed off: a hot loop would make thousands of reads a second.
    expect((await stats()) - before).toBeLessThan(20);
    expect(logged[0]?.level, JSON.stringify(logged[0]?.message)).toBe('error');
    expect(logged[0]?.message, JSON.stringify(logged[0]?.message)).toMatch(/WRONGTYPE/);
    expect(broker.state).toBe('connected');
    await client.sendCommand(['DEL', t]);
    await eventually(
      async () => {
        await broker.publish(t, { n: 1 });
        return got.length > 0;
      },
      10_000,
      () => 'reading did not resume',
    );
    expect(logged.some((entry) => entry.level === 'warn' && /works again/.test(entry.message))).toBe(true);
  });
});

describe('drain', () => {
  it('rejects disconnect with a DrainTimeoutError when a handler outlives drainTimeoutMs, leaving its entry pending', async () => {
    const t = topic('drain-timeout');
    const broker = await open({ drainTimeoutMs: 200 });
    let started = false;
    await broker.subscribe(
      t,
      async () => {
        started = true;
        await sleep(2_000);
      },
      { group: 'g' },
    );
    await broker.publish(t, { n: 1 });
    await waitFor(
      () => started,
      5_000,
      () => 'not started',
    );
    const error = await outcome(broker.disconnect());
    expect(error).toBeInstanceOf(DrainTimeoutError);
    const client = await raw();
    expect(((await client.sendCommand<unknown[]>(['XPENDING', t, 'g'])) as [number])[0]).toBe(1);
  });
});
