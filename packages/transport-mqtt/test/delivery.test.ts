import type { IPublishPacket } from 'mqtt';
import { DEAD_LETTER_HEADER, type Message } from '@ktransport/broker';
import { MqttServer } from '@ktransport/transport-mqtt';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureMosquitto, SHARED_URL } from './mosquitto.js';
import { open, sleep, topic, waitFor } from './helpers.js';

beforeAll(ensureMosquitto);

interface Body {
  n: number;
}

describe('acknowledgement after the handler settles', () => {
  it('drains on stop and redelivers what was not acknowledged to the next persistent session (same clientId, clean false)', async () => {
    const t = topic('drain');
    const clientId = `ktm-drain-${t}`;
    const finished: number[] = [];
    let stopping = false;
    let finishedWhileStopping = 0;
    const server = new MqttServer({ broker: { url: SHARED_URL, clientId, clean: false, drainTimeoutMs: 500, tracing: false, metrics: false } });
    server.subscribe<Body>(t, async (m, context) => {
      if (m.body.n === 0) {
        // Never finishes by itself: still running when the drain time is up, so it is aborted.
        await new Promise((resolve) => context.signal.addEventListener('abort', resolve, { once: true }));
        return;
      }
      await sleep(150);
      finished.push(m.body.n);
      if (stopping) finishedWhileStopping++;
    }, { concurrency: 2 });
    await server.start();
    const publisher = await open();
    // 0 blocks key "a", so 1 and 2 (key "a") never start; 3, 4 and 5 have no key and are handled.
    for (const [n, key] of [[0, 'a'], [1, 'a'], [2, 'a'], [3], [4], [5]] as const) await publisher.publish<Body>(t, { n }, key ? { key } : {});
    await waitFor(() => finished.length >= 1, 5_000, () => 'nothing finished');
    stopping = true;
    await expect(server.stop()).rejects.toMatchObject({ name: 'DrainTimeoutError', pending: 3 });
    expect(finishedWhileStopping).toBeGreaterThan(0);
    expect(finished.sort()).toEqual([3, 4, 5]);

    // The same session again: 0 (aborted), 1 and 2 (never started) come back, in key order; 3..5 were acknowledged.
    const again: number[] = [];
    const next = await open({ clientId, clean: false, sessionExpiryInterval: 0 });
    await next.subscribe<Body>(t, (m) => void again.push(m.body.n));
    await waitFor(() => again.length >= 3, 10_000, () => `again ${again}`);
    await sleep(300);
    expect(again).toEqual([0, 1, 2]);
  });

  it('does not serialize handlers: a slow subscription does not hold up another one', async () => {
    const broker = await open();
    const [slow, fast] = [topic('slow'), topic('fast')];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const fastGot: number[] = [];
    await broker.subscribe(slow, () => gate);
    await broker.subscribe<Body>(fast, (m) => void fastGot.push(m.body.n));
    await broker.publish(slow, { n: 0 });
    for (let n = 0; n < 20; n++) await broker.publish<Body>(fast, { n });
    await waitFor(() => fastGot.length === 20, 5_000, () => `fast got ${fastGot.length} while the slow handler runs`);
    release();
  });

  it('starts up to `concurrency` handlers at once; receiveMaximum bounds what the broker pushes before acknowledgements', async () => {
    const started = async (receiveMaximum: number | undefined): Promise<number> => {
      const broker = await open(receiveMaximum === undefined ? {} : { receiveMaximum });
      const t = topic('window');
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let count = 0;
      let done = 0;
      await broker.subscribe(t, async () => {
        count++;
        await gate;
        done++;
      }, { concurrency: 8 });
      const publisher = await open();
      await Promise.all(Array.from({ length: 12 }, (_, n) => publisher.publish<Body>(t, { n })));
      await sleep(500);
      const running = count;
      release();
      await waitFor(() => done === 12, 10_000, () => `done ${done}`);
      return running;
    };
    expect(await started(undefined)).toBe(8);
    expect(await started(2)).toBe(2);
  });

  it('retries a throwing handler, then dead-letters the message with the reason while the others flow', async () => {
    const broker = await open();
    const [t, dlq] = [topic('retry'), topic('retry-dlq')];
    const tries = new Map<number, number>();
    const handled: number[] = [];
    const dead: Message<Body>[] = [];
    await broker.subscribe<Body>(dlq, (m) => void dead.push(m));
    await broker.subscribe<Body>(t, (m) => {
      tries.set(m.body.n, (tries.get(m.body.n) ?? 0) + 1);
      if (m.body.n === 3) throw new Error('disk full');
      handled.push(m.body.n);
    }, { retry: { attempts: 3, initialDelayMs: 10 }, deadLetter: dlq, concurrency: 2 });
    for (let n = 0; n < 8; n++) await broker.publish<Body>(t, { n });
    await waitFor(() => dead.length === 1 && handled.length === 7, 10_000, () => `dead ${dead.length} handled ${handled}`);
    const [letter] = dead;
    expect(letter?.body).toEqual({ n: 3 });
    expect(letter?.headers[DEAD_LETTER_HEADER.error]).toBe('disk full');
    expect(letter?.headers[DEAD_LETTER_HEADER.attempts]).toBe('3');
    expect(letter?.headers[DEAD_LETTER_HEADER.originalTopic]).toBe(t);
    expect(tries.get(3)).toBe(3);
  });

  it('redelivers a failed message after redeliveryDelayMs, holding its acknowledgement meanwhile', async () => {
    const gaps = async (redeliveryDelayMs: number | undefined): Promise<number> => {
      const broker = await open(redeliveryDelayMs === undefined ? {} : { redeliveryDelayMs });
      const t = topic('redelivery');
      const at: number[] = [];
      await broker.subscribe(t, () => {
        at.push(Date.now());
        if (at.length < 2) throw new Error('not yet');
      });
      await broker.publish(t, { n: 1 });
      await waitFor(() => at.length >= 2, 10_000, () => `attempts ${at.length}`);
      return at[1]! - at[0]!;
    };
    const short = await gaps(100);
    expect(short).toBeGreaterThanOrEqual(90);
    expect(short).toBeLessThan(800);
    expect(await gaps(undefined)).toBeGreaterThanOrEqual(950);
  });
});

describe('QoS and retain', () => {
  it('delivers with the lower of publish and subscribe QoS, and QoS 2 end to end', async () => {
    const broker = await open();
    const [q2, q0] = [topic('qos2'), topic('qos0')];
    const got: { topic: string; qos: number }[] = [];
    const record = (m: Message): void => void got.push({ topic: m.topic, qos: (m.raw as IPublishPacket).qos });
    await broker.subscribe(q2, record, { qos: 2 });
    await broker.subscribe(q0, record, { qos: 0 });
    await broker.publish(q2, 'exactly once', { qos: 2 });
    await broker.publish(q0, 'at most once', { qos: 2 });
    await broker.publish(q2, 'fire and forget', { qos: 0 });
    await waitFor(() => got.length === 3, 5_000, () => JSON.stringify(got));
    expect(got).toEqual(expect.arrayContaining([{ topic: q2, qos: 2 }, { topic: q0, qos: 0 }, { topic: q2, qos: 0 }]));
  });

  it('shares one MQTT subscription among subscribers of a filter, raising its QoS for the most demanding one', async () => {
    const broker = await open();
    const t = topic('shared-route');
    const got: { who: string; qos: number }[] = [];
    const record = (who: string) => (m: Message): void => void got.push({ who, qos: (m.raw as IPublishPacket).qos });
    await Promise.all([broker.subscribe(t, record('a'), { qos: 0 }), broker.subscribe(t, record('b'), { qos: 0 })]);
    await broker.subscribe(t, record('c'), { qos: 2 });
    await broker.publish(t, 1, { qos: 2 });
    await waitFor(() => got.length === 3, 5_000, () => JSON.stringify(got));
    expect(got.sort((x, y) => x.who.localeCompare(y.who))).toEqual([{ who: 'a', qos: 2 }, { who: 'b', qos: 2 }, { who: 'c', qos: 2 }]);
  });

  it('sends at most the broker\'s Receive Maximum QoS 2 publishes at once (no "quota exceeded")', async () => {
    const broker = await open();
    const t = topic('burst');
    const results = await Promise.allSettled(Array.from({ length: 300 }, (_, n) => broker.publish<Body>(t, { n }, { qos: 2 })));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
  });

  it('keeps a retained message for later subscribers', async () => {
    const broker = await open();
    const t = topic('retain');
    await broker.publish(t, { state: 'on' }, { retain: true });
    await broker.publish(`${t}-not`, { state: 'off' });
    const got: Message[] = [];
    await broker.subscribe(t, (m) => void got.push(m));
    await broker.subscribe(`${t}-not`, (m) => void got.push(m));
    await waitFor(() => got.length === 1, 5_000, () => 'no retained message');
    await sleep(200);
    expect(got.map((m) => [m.body, (m.raw as IPublishPacket).retain])).toEqual([[{ state: 'on' }, true]]);
    await broker.publish(t, '', { retain: true, codec: 'text' }); // clears it
  });
});
