import { describe, expect, it } from 'vitest';
import {
  ConfigurationError,
  ConnectionError,
  DrainTimeoutError,
  MemoryBroker,
  type Middleware,
  PublishError,
  type PublishMiddleware,
} from '@ktransport/broker';
import { sleep, waitFor } from '@ktransport/broker/testing';
import { defined, deferred, memoryBroker } from './helpers.js';

describe('MemoryBroker', () => {
  it('refuses to publish or subscribe before connect and after disconnect', async () => {
    const broker = new MemoryBroker();
    await expect(broker.publish('t', 1)).rejects.toBeInstanceOf(ConnectionError);
    await expect(broker.subscribe('t', () => undefined)).rejects.toBeInstanceOf(ConnectionError);
    await broker.connect();
    await broker.publish('t', 1);
    await broker.disconnect();
    await expect(broker.publish('t', 1)).rejects.toBeInstanceOf(ConnectionError);
  });

  it('rejects bad topics, filters and concurrency with typed errors', async () => {
    const broker = await memoryBroker();
    await expect(broker.publish('a/+', 1)).rejects.toBeInstanceOf(PublishError);
    await expect(broker.subscribe('a/#/b', () => undefined)).rejects.toBeInstanceOf(ConfigurationError);
    await expect(broker.subscribe('a', () => undefined, { concurrency: 0 })).rejects.toBeInstanceOf(ConfigurationError);
    await broker.disconnect();
  });

  it('refuses payloads above maxPayloadBytes and still delivers the others', async () => {
    const broker = await memoryBroker({ maxPayloadBytes: 64 });
    const got: string[] = [];
    await broker.subscribe('t', (m) => void got.push(m.body as string), { codec: 'text' });
    await expect(broker.publish('t', 'x'.repeat(65), { codec: 'text' })).rejects.toThrow(/exceeds maxPayloadBytes \(64\)/);
    await broker.publish('t', 'small', { codec: 'text' });
    await waitFor(
      () => got.length === 1,
      2000,
      () => 'nothing',
    );
    expect(got).toEqual(['small']);
    await broker.disconnect();
  });

  it('bounds handlers running at once by concurrency', async () => {
    const broker = await memoryBroker();
    let running = 0;
    let peak = 0;
    let done = 0;
    await broker.subscribe(
      't',
      async () => {
        peak = Math.max(peak, ++running);
        await sleep(5);
        running--;
        done++;
      },
      { concurrency: 3 },
    );
    for (let i = 0; i < 20; i++) await broker.publish('t', i);
    await waitFor(
      () => done === 20,
      5000,
      () => String(done),
    );
    expect(peak).toBe(3);
    await broker.disconnect();
  });

  it('waits redeliveryDelayMs before delivering a failed message again', async () => {
    const broker = await memoryBroker({ redeliveryDelayMs: 80 });
    const at: number[] = [];
    await broker.subscribe('t', () => {
      at.push(performance.now());
      if (at.length === 1) throw new Error('first try fails');
    });
    await broker.publish('t', 1);
    await waitFor(
      () => at.length === 2,
      2000,
      () => String(at.length),
    );
    expect(defined(at[1], 'a second delivery') - defined(at[0], 'a first delivery')).toBeGreaterThanOrEqual(75);
    await broker.disconnect();
  });

  it('drains queued and running handlers on disconnect', async () => {
    const broker = await memoryBroker();
    const finished: number[] = [];
    await broker.subscribe<number>('t', async (m) => {
      await sleep(20);
      finished.push(m.body);
    });
    for (let i = 0; i < 5; i++) await broker.publish('t', i);
    await broker.disconnect();
    expect(finished).toEqual([0, 1, 2, 3, 4]);
  });

  it('delivers and handles what draining handlers dead-letter to its own subscriptions, and refuses other publishes meanwhile', async () => {
    const broker = await memoryBroker({ drainTimeoutMs: 5_000 });
    const dead: string[] = [];
    const late: unknown[] = [];
    // The dead-letter subscription is idle when the drain begins; the failing handlers send to it afterwards.
    await broker.subscribe<string>('orders/dead', async (m) => {
      await sleep(10);
      dead.push(m.body);
    });
    await broker.subscribe<string>(
      'orders',
      async (m) => {
        await sleep(30);
        broker.publish('orders', 'from a handler').catch((e: unknown) => late.push(e));
        throw new Error(`cannot store ${m.body}`);
      },
      { deadLetter: 'orders/dead', concurrency: 2 },
    );
    for (const order of ['a', 'b', 'c']) await broker.publish('orders', order);
    const began = Date.now();
    await broker.disconnect();
    expect(Date.now() - began).toBeLessThan(2_000);
    expect(dead.sort()).toEqual(['a', 'b', 'c']);
    expect(late).toHaveLength(3);
    expect(late[0]).toBeInstanceOf(ConnectionError);
  });

  it('gives up draining after drainTimeoutMs with a DrainTimeoutError naming what was left', async () => {
    const broker = await memoryBroker({ drainTimeoutMs: 50 });
    const release = deferred();
    let aborted = false;
    await broker.subscribe('t', async (_, c) => {
      c.signal.addEventListener('abort', () => (aborted = true));
      await release.promise;
    });
    await broker.publish('t', 1);
    await sleep(5);
    const error = await broker.disconnect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DrainTimeoutError);
    expect((error as DrainTimeoutError).pending).toBe(1);
    expect(aborted).toBe(true);
    release.resolve();
  });

  it('finishes what was queued for a subscription before unsubscribe resolves, then stops delivering', async () => {
    const broker = await memoryBroker();
    const got: number[] = [];
    const sub = await broker.subscribe<number>('t', async (m) => {
      await sleep(5);
      got.push(m.body);
    });
    for (let i = 0; i < 3; i++) await broker.publish('t', i);
    await sub.unsubscribe();
    expect(got).toEqual([0, 1, 2]);
    await broker.publish('t', 3);
    await sleep(20);
    expect(got).toEqual([0, 1, 2]);
    await broker.disconnect();
  });

  it('runs the middleware and publishMiddleware options around every message', async () => {
    const seen: string[] = [];
    const stamp: PublishMiddleware = (next) => (m) => {
      m.headers['x-tenant'] = 'acme';
      return next(m);
    };
    const audit: Middleware = (next) => async (m, c) => {
      seen.push(`${m.topic}:${m.headers['x-tenant']}`);
      await next(m, c);
    };
    const broker = await memoryBroker({ publishMiddleware: [stamp], middleware: [audit] });
    await broker.subscribe('t', () => undefined);
    await broker.publish('t', 1);
    await waitFor(
      () => seen.length === 1,
      2000,
      () => 'nothing',
    );
    expect(seen).toEqual(['t:acme']);
    await broker.disconnect();
  });

  it('turns what a publish middleware throws or rejects with into a retriable PublishError with the cause', async () => {
    const refusal = new Error('quota service unreachable');
    const throwing: PublishMiddleware = () => () => {
      throw refusal;
    };
    const rejecting: PublishMiddleware = () => () => Promise.reject(refusal);
    for (const middleware of [throwing, rejecting]) {
      const broker = await memoryBroker({ publishMiddleware: [middleware] });
      const error: unknown = await broker.publish('t', 1).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PublishError);
      expect(error).toMatchObject({ topic: 't', retriable: true, cause: refusal, message: 'publish to t failed: quota service unreachable' });
      await broker.disconnect();
    }
  });

  it('load-balances a group round-robin and gives every plain subscriber a copy', async () => {
    const broker = await memoryBroker();
    const members = [{ count: 0 }, { count: 0 }, { count: 0 }];
    let plain = 0;
    for (const member of members) await broker.subscribe('t', () => void member.count++, { group: 'g' });
    await broker.subscribe('t', () => void plain++);
    for (let i = 0; i < 30; i++) await broker.publish('t', i);
    const counts = (): number[] => members.map((m) => m.count);
    await waitFor(
      () => plain === 30 && counts().reduce((a, b) => a + b) === 30,
      2000,
      () => `${counts().join(',')} ${plain}`,
    );
    expect(counts()).toEqual([10, 10, 10]);
    await broker.disconnect();
  });
});

describe('MemoryBroker connection state', () => {
  it('reports connected between connect and disconnect, and tells listeners', async () => {
    const broker = new MemoryBroker();
    const seen: string[] = [];
    const off = broker.onStateChange((s) => seen.push(s));
    expect(broker.state).toBe('disconnected');
    await broker.connect();
    expect(broker.state).toBe('connected');
    await broker.disconnect();
    off();
    await broker.connect();
    expect(seen).toEqual(['connected', 'disconnected']);
    await broker.disconnect();
  });
});

describe('message ids', () => {
  it('adds a message-id only with messageIds, and always keeps one the caller set', async () => {
    for (const messageIds of [false, true]) {
      const broker = await memoryBroker({ messageIds });
      const got: { id: string | undefined; header: string | undefined }[] = [];
      await broker.subscribe('t', (m) => void got.push({ id: m.id, header: m.headers['message-id'] }));
      await broker.publish('t', 1);
      await broker.publish('t', 2, { headers: { 'message-id': 'order-42' } });
      await waitFor(
        () => got.length === 2,
        2000,
        () => String(got.length),
      );
      if (messageIds) expect(got[0]?.id).toMatch(/^[0-9a-f-]{36}$/);
      else expect(got[0]).toEqual({ id: undefined, header: undefined });
      expect(got[1]).toEqual({ id: 'order-42', header: 'order-42' });
      await broker.disconnect();
    }
  });

  it('a message backing off between retries holds no handler slot: other keys run meanwhile (concurrency 1)', async () => {
    const broker = await memoryBroker();
    const order: string[] = [];
    await broker.subscribe('dlq', (m) => void order.push(`dead ${String(m.key)}`), { codec: 'bytes' });
    await broker.subscribe<{ n: number }>(
      'orders',
      (m) => {
        if (m.key === 'bad') throw new Error('refused');
        order.push(`${m.key}:${m.body.n}`);
      },
      { concurrency: 1, retry: { attempts: 3, initialDelayMs: 150 }, deadLetter: 'dlq' },
    );
    await broker.publish('orders', { n: 0 }, { key: 'bad' });
    for (let n = 1; n <= 5; n++) await broker.publish('orders', { n }, { key: 'good' });
    await waitFor(
      () => order.includes('dead bad'),
      5_000,
      () => order.join(),
    );
    // The good key ran during the bad one's backoff (150 + 300 ms), not after it was dead-lettered.
    expect(order).toEqual(['good:1', 'good:2', 'good:3', 'good:4', 'good:5', 'dead bad']);
    await broker.disconnect();
  });
});
