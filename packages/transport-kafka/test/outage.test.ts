import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerError, type ConnectionState, PublishError, SubscribeError, TimeoutError } from '@ktransport/broker';
import { sleep, waitFor } from '@ktransport/broker/testing';
import { KafkaBroker, type KafkaBrokerOptions } from '@ktransport/transport-kafka';
import { lockPrivateKafka, PrivateKafka, unique } from './helpers.js';

/**
 * A broker of this file's own, started from an empty data directory and stopped
 * and started again by the tests. Clients use the default `retry`, session and
 * rebalance timeouts (those a user gets), except where a test says otherwise.
 */
const kafka = new PrivateKafka(29192, { fresh: true });
let unlock: (() => Promise<void>) | undefined;
const open: KafkaBroker[] = [];

beforeAll(async () => {
  // The conformance file runs a private broker too: one at a time on this machine.
  unlock = await lockPrivateKafka();
}, 550_000);

afterAll(async () => {
  await Promise.all(open.map((b) => b.disconnect().catch(() => undefined)));
  await kafka.wipe();
  await unlock?.();
}, 90_000);

function broker(options: Partial<KafkaBrokerOptions> = {}): KafkaBroker {
  const b = new KafkaBroker({ brokers: kafka.address, tracing: false, metrics: false, ...options });
  open.push(b);
  return b;
}

/** Resolves with the time until `broker.state` is `state` (checked every 20 ms), or rejects after `timeoutMs`. */
async function timeUntil(b: KafkaBroker, state: ConnectionState, timeoutMs: number): Promise<number> {
  const started = Date.now();
  await waitFor(
    () => b.state === state,
    timeoutMs,
    () => `state is ${b.state}, not ${state}, after ${timeoutMs} ms`,
  );
  return Date.now() - started;
}

describe('KafkaBroker started together with its Kafka', () => {
  it('connect and 40 subscriptions made while the broker boots retry (connection refused, coordinators loading) and all work', async () => {
    // Not awaited: the service starts while Kafka does (before this fix some of these subscribe
    // calls failed at once with "The coordinator is loading and hence can't process requests").
    const booting = kafka.launch();
    const b = broker({ startTimeoutMs: 60_000 });
    const topics = Array.from({ length: 40 }, (_, i) => unique(`boot-${i}`));
    const got = new Set<string>();
    try {
      await b.connect();
      await Promise.all(topics.map((topic) => b.subscribe<{ topic: string }>(topic, (m) => void got.add(m.body.topic), { group: unique('g') })));
    } finally {
      await booting;
    }
    await Promise.all(topics.map((topic) => b.publish(topic, { topic })));
    await waitFor(
      () => got.size === topics.length,
      30_000,
      () => `received on ${got.size} of ${topics.length} topics`,
    );
    await b.disconnect();
  }, 150_000);
});

describe('KafkaBroker health while its broker goes away and comes back', () => {
  it('state turns reconnecting within 5 s of the broker stopping and connected within 5 s of it answering again; nothing published is lost', async () => {
    const topic = unique('health');
    const b = broker();
    await b.connect();
    await b.createTopics({ topic, partitions: 3 });
    const consumed = new Set<number>();
    await b.subscribe<{ n: number }>(topic, (m) => void consumed.add(m.body.n), { group: unique('g'), concurrency: 3 });
    // The probe alone would notice too; a broker without it (and without traffic) must not.
    const unprobed = broker({ healthCheckIntervalMs: 0 });
    await unprobed.connect();
    const unprobedStates: ConnectionState[] = [];
    unprobed.onStateChange((s) => unprobedStates.push(s));
    const acked = new Set<number>();
    for (let n = 0; n < 50; n++) await b.publish(topic, { n }, { key: `k${n}` }).then(() => acked.add(n));
    await waitFor(
      () => consumed.size === 50,
      20_000,
      () => `consumed ${consumed.size} before the outage`,
    );

    const stopping = Date.now();
    const down = timeUntil(b, 'reconnecting', 60_000);
    await kafka.stop();
    const stoppedMs = Date.now() - stopping;
    const reconnectingMs = await down;
    // Down for longer than the consumers' kafkajs retries last, so that they give up (crash) and must be restarted.
    await sleep(12_000);
    expect(unprobed.state).toBe('connected');

    await kafka.start({ waitForGroups: false });
    const connectedMs = await timeUntil(b, 'connected', 60_000);
    console.log(
      `broker stop took ${stoppedMs} ms; reconnecting ${reconnectingMs} ms after stop() began; connected ${connectedMs} ms after the broker answered again`,
    );
    expect(reconnectingMs).toBeLessThan(stoppedMs + 5_000);
    expect(connectedMs).toBeLessThan(5_000);

    const answering = Date.now();
    for (let n = 50; n < 100; n++) await b.publish(topic, { n }, { key: `k${n}` }).then(() => acked.add(n));
    const publishedMs = Date.now() - answering;
    // Partitions flow again at the latest once the old members' sessions expired (sessionTimeoutMs, 30 s by default).
    await waitFor(
      () => [...acked].every((n) => consumed.has(n)),
      45_000,
      () => `unconsumed ${[...acked].filter((n) => !consumed.has(n)).join(',')}`,
    );
    console.log(`50 publishes took ${publishedMs} ms; all consumed ${Date.now() - answering} ms after the broker answered again`);
    expect(acked.size).toBe(100);
    expect(unprobedStates).toEqual([]);
  }, 180_000);
});

describe('KafkaBroker publish and subscribe while its broker is away', () => {
  it('every publish settles within publishTimeoutMs; those never sent are never written later; subscribe gives up after startTimeoutMs', async () => {
    const topic = unique('timeout');
    const publishTimeoutMs = 3_000;
    const b = broker({ producer: { publishTimeoutMs }, startTimeoutMs: 2_000 });
    await b.connect();
    await b.createTopics({ topic, partitions: 1 });
    await b.publish(topic, { n: -1 });
    await kafka.stop();

    const outcomes: { n: number; ms: number; error: unknown }[] = [];
    const publish = (n: number): Promise<void> => {
      const started = Date.now();
      return b.publish(topic, { n }).then(
        () => void outcomes.push({ n, ms: Date.now() - started, error: undefined }),
        (error: unknown) => void outcomes.push({ n, ms: Date.now() - started, error }),
      );
    };
    const all: Promise<void>[] = [];
    // A burst (one request), then one publish every 150 ms behind it.
    for (let n = 0; n < 20; n++) all.push(publish(n));
    for (let n = 20; n < 60; n++) {
      await sleep(150);
      all.push(publish(n));
    }
    const subscribing = Date.now();
    const subscribeError = await b.subscribe(topic, () => undefined, { group: unique('g') }).catch((e: unknown) => e);
    const subscribeMs = Date.now() - subscribing;
    await Promise.all(all);

    expect(outcomes).toHaveLength(60);
    expect(Math.max(...outcomes.map((o) => o.ms))).toBeLessThan(publishTimeoutMs + 1_000);
    for (const { error } of outcomes) {
      expect(error).toBeInstanceOf(BrokerError);
      expect((error as BrokerError).retriable).toBe(true);
    }
    const notSent = outcomes.filter((o) => o.error instanceof PublishError && /was not sent/.test(String(o.error))).map((o) => o.n);
    const maybeWritten = outcomes.filter((o) => o.error instanceof TimeoutError && /may still have been written/.test(String(o.error))).map((o) => o.n);
    // The others failed on their way (a TimeoutError: they may have been written) or kafkajs gave up first (a refused connection).
    expect(notSent.length).toBeGreaterThan(0);
    expect(maybeWritten.length).toBeGreaterThan(0);

    expect(subscribeError).toBeInstanceOf(SubscribeError);
    expect(String(subscribeError)).toMatch(/within 2000 ms \(startTimeoutMs\)/);
    expect(subscribeMs).toBeGreaterThanOrEqual(1_900);
    expect(subscribeMs).toBeLessThan(4_000);

    await kafka.start({ waitForGroups: false });
    await waitFor(
      () => b.state === 'connected',
      30_000,
      () => `state ${b.state}`,
    );
    await b.publish(topic, { n: 1000 });
    const seen = new Set<number>();
    const reader = broker();
    await reader.connect();
    await reader.subscribe<{ n: number }>(topic, (m) => void seen.add(m.body.n), { group: unique('reader'), fromBeginning: true });
    await waitFor(
      () => seen.has(1000),
      30_000,
      () => `read ${[...seen].join(',')}`,
    );
    // A publish dropped before it was sent never reaches the topic, not even after the broker came back.
    expect(notSent.filter((n) => seen.has(n))).toEqual([]);
  }, 180_000);
});
