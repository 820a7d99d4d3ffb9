import type { IPublishPacket } from 'mqtt';
import { DEAD_LETTER_HEADER, type Message, type SubscriptionLoad } from '@ktransport/broker';
import { MqttServer } from '@ktransport/transport-mqtt';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureMosquitto, SHARED_URL } from './mosquitto.js';
import { defined, open, sleep, topic, waitFor } from './helpers.js';

beforeAll(ensureMosquitto);

interface Body {
  n: number;
}

describe('acknowledgement after the handler settles', () => {
  it('drains on stop and redelivers what was not acknowledged to the next persistent session (same clientId, clean false)', async () => {
    const t = topic('drain');
    const clientId = `ktm-drain-${t}`;
    const started: number[] = [];
    const finished: number[] = [];
    let stopping = false;
    let finishedWhileStopping = 0;
    const server = new MqttServer({ broker: { url: SHARED_URL, clientId, clean: false, drainTimeoutMs: 500, tracing: false, metrics: false } });
    server.subscribe<Body>(
      t,
      async (m, context) => {
        started.push(m.body.n);
        if (m.body.n === 0) {
          // Never finishes by itself: still running when the drain time is up, so it is aborted.
          await new Promise((resolve) => context.signal.addEventListener('abort', resolve, { once: true }));
          return;
        }
        // 4 is still running when stop() begins, and finishes while draining.
        if (m.body.n === 4)
          await waitFor(
            () => stopping,
            5_000,
            () => 'stop() was not called',
          ).then(() => sleep(50));
        finished.push(m.body.n);
        if (stopping) finishedWhileStopping++;
      },
      { concurrency: 2 },
    );
    await server.start();
    const publisher = await open();
    // 0 blocks key "a", so 1 and 2 (key "a") wait; 3 is handled, 4 runs beside 0, and 5 waits for a free slot.
    for (const [n, key] of [[0, 'a'], [1, 'a'], [2, 'a'], [3], [4], [5]] as const) await publisher.publish<Body>(t, { n }, key ? { key } : {});
    await waitFor(
      () => started.includes(4),
      5_000,
      () => `started ${started.join(',')}`,
    );
    stopping = true;
    // Running: 0 (aborted when the drain time is up) and 4 (finishes); queued, never started: 1, 2 and 5.
    await expect(server.stop()).rejects.toMatchObject({ name: 'DrainTimeoutError', pending: 1, queued: 3 });
    expect(finishedWhileStopping).toBe(1);
    expect(finished).toEqual([3, 4]);
    expect(started.sort()).toEqual([0, 3, 4]);

    // The same session again: 0 (aborted), 1, 2 and 5 (never started) come back, key "a" in order; 3 and 4 were acknowledged.
    const again: number[] = [];
    const next = await open({ clientId, clean: false, sessionExpiryInterval: 0 });
    await next.subscribe<Body>(t, (m) => void again.push(m.body.n));
    await waitFor(
      () => again.length >= 4,
      10_000,
      () => `again ${again.join(',')}`,
    );
    await sleep(300);
    expect([...again].sort()).toEqual([0, 1, 2, 5]);
    expect(again.filter((n) => n < 3)).toEqual([0, 1, 2]);
  });

  it('starts no queued message once stopping began: stop takes about one handler, and a persistent session loses nothing', async () => {
    const t = topic('drain-queue');
    const clientId = `ktm-drain-queue-${t}`;
    const before: number[] = [];
    const broker = await open({ clientId, clean: false });
    let running = 0;
    await broker.subscribe<Body>(t, async (m) => {
      running++;
      await sleep(200);
      before.push(m.body.n);
    }); // concurrency 1: the others wait in the queue
    const publisher = await open();
    for (let n = 0; n < 30; n++) await publisher.publish<Body>(t, { n });
    await waitFor(
      () => running >= 1,
      5_000,
      () => 'no handler started',
    );
    const stopping = Date.now();
    await broker.disconnect(); // drainTimeoutMs is the default 10,000 ms
    const took = Date.now() - stopping;
    expect(took).toBeLessThan(1_500); // one 200 ms handler, not 30 of them
    expect(before.length).toBeGreaterThanOrEqual(1);
    expect(before.length).toBeLessThanOrEqual(3);

    const after: number[] = [];
    const next = await open({ clientId, clean: false, sessionExpiryInterval: 0 });
    await next.subscribe<Body>(t, (m) => void after.push(m.body.n), { concurrency: 8 });
    await waitFor(
      () => before.length + after.length >= 30,
      10_000,
      () => `before ${before.length} after ${after.length}`,
    );
    await sleep(300);
    expect([...before, ...after].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, n) => n)); // none lost, none twice
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
    await waitFor(
      () => fastGot.length === 20,
      5_000,
      () => `fast got ${fastGot.length} while the slow handler runs`,
    );
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
      await broker.subscribe(
        t,
        async () => {
          count++;
          await gate;
          done++;
        },
        { concurrency: 8 },
      );
      const publisher = await open();
      await Promise.all(Array.from({ length: 12 }, (_, n) => publisher.publish<Body>(t, { n })));
      await sleep(500);
      const running = count;
      release();
      await waitFor(
        () => done === 12,
        10_000,
        () => `done ${done}`,
      );
      return running;
    };
    expect(await started(undefined)).toBe(8);
    expect(await started(2)).toBe(2);
  });

  it('reports its load: handlers running and messages queued behind them (SubscriptionLoad)', async () => {
    const broker = await open();
    const t = topic('load');
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let done = 0;
    const subscription = await broker.subscribe(
      t,
      async () => {
        await gate;
        done++;
      },
      { concurrency: 2 },
    );
    const load = subscription as typeof subscription & SubscriptionLoad;
    expect([load.running, load.queued]).toEqual([0, 0]);
    const publisher = await open();
    for (let n = 0; n < 5; n++) await publisher.publish<Body>(t, { n });
    await waitFor(
      () => load.running + load.queued === 5,
      5_000,
      () => `running ${load.running}, queued ${load.queued}`,
    );
    expect([load.running, load.queued]).toEqual([2, 3]);
    release();
    await waitFor(
      () => done === 5,
      5_000,
      () => `done ${done}`,
    );
    expect([load.running, load.queued]).toEqual([0, 0]);
  });

  it('unsubscribe() still handles what was received for the subscription, a redelivery included, then nothing more', async () => {
    const broker = await open({ redeliveryDelayMs: 50 });
    const t = topic('unsubscribe-finish');
    const handled: number[] = [];
    let failed = false;
    let started = 0;
    const subscription = await broker.subscribe<Body>(t, async (m) => {
      started++;
      await sleep(30);
      if (m.body.n === 1 && !failed) {
        failed = true;
        throw new Error('once');
      }
      handled.push(m.body.n);
    }); // concurrency 1: the others wait in the engine's queue
    const publisher = await open();
    for (let n = 0; n < 5; n++) await publisher.publish<Body>(t, { n });
    const load = subscription as typeof subscription & SubscriptionLoad;
    await waitFor(
      () => started >= 1 && load.running + load.queued === 5,
      5_000,
      () => `started ${started}, running ${load.running}, queued ${load.queued}`,
    );
    await subscription.unsubscribe();
    expect(failed).toBe(true);
    expect([...handled].sort()).toEqual([0, 1, 2, 3, 4]);
    expect([load.running, load.queued]).toEqual([0, 0]);
    await publisher.publish<Body>(t, { n: 5 });
    await sleep(300);
    expect(handled).not.toContain(5);
  });

  it('Mosquitto 2.0.11 keeps to receiveMaximum until the first acknowledgement, and not after (README: Flow control)', async () => {
    const receiveMaximum = 5;
    const broker = await open({ receiveMaximum });
    const t = topic('window-overshoot');
    let gateOpen = false;
    let handled = 0;
    const subscription = await broker.subscribe(t, async () => {
      await waitFor(
        () => gateOpen,
        10_000,
        () => 'the gate never opened',
      );
      await sleep(10);
      handled++;
    }); // concurrency 1
    const load = subscription as typeof subscription & SubscriptionLoad;
    const publisher = await open();
    await Promise.all(Array.from({ length: 60 }, (_, n) => publisher.publish<Body>(t, { n })));
    await sleep(300);
    // Nothing acknowledged yet: the broker keeps to the window.
    expect(load.running + load.queued).toBe(receiveMaximum);
    gateOpen = true;
    let most = 0;
    const until = Date.now() + 10_000;
    while (handled < 60 && Date.now() < until) {
      most = Math.max(most, load.running + load.queued);
      await sleep(5);
    }
    // Each PUBACK of the oldest message lets up to receiveMaximum more through (fixed in Mosquitto 2.0.13):
    // when this fails, the broker keeps to its window and the README's Flow control section should say so.
    expect(most).toBeGreaterThan(receiveMaximum);
    expect(handled).toBe(60);
  });

  it('retries a throwing handler, then dead-letters the message with the reason while the others flow', async () => {
    const broker = await open();
    const [t, dlq] = [topic('retry'), topic('retry-dlq')];
    const tries = new Map<number, number>();
    const handled: number[] = [];
    const dead: Message<Body>[] = [];
    await broker.subscribe<Body>(dlq, (m) => void dead.push(m));
    await broker.subscribe<Body>(
      t,
      (m) => {
        tries.set(m.body.n, (tries.get(m.body.n) ?? 0) + 1);
        if (m.body.n === 3) throw new Error('disk full');
        handled.push(m.body.n);
      },
      { retry: { attempts: 3, initialDelayMs: 10 }, deadLetter: dlq, concurrency: 2 },
    );
    for (let n = 0; n < 8; n++) await broker.publish<Body>(t, { n });
    await waitFor(
      () => dead.length === 1 && handled.length === 7,
      10_000,
      () => `dead ${dead.length} handled ${handled.join(',')}`,
    );
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
      await waitFor(
        () => at.length >= 2,
        10_000,
        () => `attempts ${at.length}`,
      );
      return defined(at[1], 'a second attempt') - defined(at[0], 'a first attempt');
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
    await waitFor(
      () => got.length === 3,
      5_000,
      () => JSON.stringify(got),
    );
    expect(got).toEqual(
      expect.arrayContaining([
        { topic: q2, qos: 2 },
        { topic: q0, qos: 0 },
        { topic: q2, qos: 0 },
      ]),
    );
  });

  it('shares one MQTT subscription among subscribers of a filter, raising its QoS for the most demanding one', async () => {
    const broker = await open();
    const t = topic('shared-route');
    const got: { who: string; qos: number }[] = [];
    const record =
      (who: string) =>
      (m: Message): void =>
        void got.push({ who, qos: (m.raw as IPublishPacket).qos });
    await Promise.all([broker.subscribe(t, record('a'), { qos: 0 }), broker.subscribe(t, record('b'), { qos: 0 })]);
    await broker.subscribe(t, record('c'), { qos: 2 });
    await broker.publish(t, 1, { qos: 2 });
    await waitFor(
      () => got.length === 3,
      5_000,
      () => JSON.stringify(got),
    );
    expect(got.sort((x, y) => x.who.localeCompare(y.who))).toEqual([
      { who: 'a', qos: 2 },
      { who: 'b', qos: 2 },
      { who: 'c', qos: 2 },
    ]);
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
    await waitFor(
      () => got.length === 1,
      5_000,
      () => 'no retained message',
    );
    await sleep(200);
    expect(got.map((m) => [m.body, (m.raw as IPublishPacket).retain])).toEqual([[{ state: 'on' }, true]]);
    await broker.publish(t, '', { retain: true, codec: 'text' }); // clears it
  });
});
