import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionState } from '@ktransport/broker';
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
  await waitFor(() => b.state === state, timeoutMs, () => `state is ${b.state}, not ${state}, after ${timeoutMs} ms`);
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
    await waitFor(() => got.size === topics.length, 30_000, () => `received on ${got.size} of ${topics.length} topics`);
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
    await waitFor(() => consumed.size === 50, 20_000, () => `consumed ${consumed.size} before the outage`);

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
    console.log(`broker stop took ${stoppedMs} ms; reconnecting ${reconnectingMs} ms after stop() began; connected ${connectedMs} ms after the broker answered again`);
    expect(reconnectingMs).toBeLessThan(stoppedMs + 5_000);
    expect(connectedMs).toBeLessThan(5_000);

    const answering = Date.now();
    for (let n = 50; n < 100; n++) await b.publish(topic, { n }, { key: `k${n}` }).then(() => acked.add(n));
    const publishedMs = Date.now() - answering;
    // Partitions flow again at the latest once the old members' sessions expired (sessionTimeoutMs, 30 s by default).
    await waitFor(() => [...acked].every((n) => consumed.has(n)), 45_000, () => `unconsumed ${[...acked].filter((n) => !consumed.has(n)).join(',')}`);
    console.log(`50 publishes took ${publishedMs} ms; all consumed ${Date.now() - answering} ms after the broker answered again`);
    expect(acked.size).toBe(100);
    expect(unprobedStates).toEqual([]);
  }, 180_000);
});
