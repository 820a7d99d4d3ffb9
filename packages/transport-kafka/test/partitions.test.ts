import { describe, expect, it } from 'vitest';
import { ConfigurationError, type Message, type Subscription, type SubscriptionLoad } from '@ktransport/broker';
import { sleep, waitFor } from '@ktransport/broker/testing';
import { KafkaBroker } from '@ktransport/transport-kafka';
import { committedOffsets, createTopic, defined, KAFKA, sharedKafka, unique } from './helpers.js';

interface Body {
  readonly n: number;
}

const kafka = sharedKafka();

/** The load a Kafka subscription reports (every subscription of ktransport has it). */
function load(subscription: Subscription): SubscriptionLoad {
  if (!('queued' in subscription) || !('running' in subscription)) throw new Error('the subscription does not report its load (SubscriptionLoad)');
  return subscription as Subscription & SubscriptionLoad;
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return defined(sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))], `a ${p}th percentile`);
}

describe('KafkaBroker partitions are independent', () => {
  it('a slow partition does not delay the others: their messages are handled before its backlog, within a few hundred ms', async () => {
    const topic = await createTopic(kafka.admin, unique('slow-partition'), 3);
    const broker = await kafka.connected();
    const order: string[] = [];
    const publishedAt = new Map<string, number>();
    const latency = new Map<string, number>();
    let slowStarted = false;
    await broker.subscribe<Body>(
      topic,
      async (m) => {
        const id = `${m.partition}:${m.body.n}`;
        if (m.partition === 0) {
          slowStarted = true;
          await sleep(1_000);
        }
        order.push(id);
        latency.set(id, Date.now() - defined(publishedAt.get(id), `the publish time of ${id}`));
      },
      { group: unique('g'), concurrency: 3 },
    );
    const slow = Array.from({ length: 6 }, (_, n) => n);
    for (const n of slow) publishedAt.set(`0:${n}`, Date.now());
    // One request: the six records reach the consumer in one fetch, as a backlog does.
    await Promise.all(slow.map((n) => broker.publish<Body>(topic, { n }, { partition: 0 })));
    await waitFor(
      () => slowStarted,
      15_000,
      () => 'the slow partition never started',
    );
    const others: string[] = [];
    for (let n = 0; n < 5; n++) {
      for (const partition of [1, 2]) {
        const id = `${partition}:${n}`;
        others.push(id);
        publishedAt.set(id, Date.now());
        await broker.publish<Body>(topic, { n }, { partition });
      }
    }
    await waitFor(
      () => order.length === slow.length + others.length,
      20_000,
      () => `handled ${order.join(' ')}`,
    );
    const worst = Math.max(...others.map((id) => defined(latency.get(id), `the latency of ${id}`)));
    console.log(`partitions 1 and 2 behind a slow partition 0: worst latency ${worst} ms; order ${order.join(' ')}`);
    // By order: everything of partitions 1 and 2 before the second message of partition 0.
    const secondSlow = order.indexOf('0:1');
    expect(others.every((id) => order.indexOf(id) < secondSlow)).toBe(true);
    // By time: handled within a few hundred ms of their publish.
    expect(worst).toBeLessThan(800);
    // Partition 0 itself stays in order.
    expect(order.filter((id) => id.startsWith('0:'))).toEqual(slow.map((n) => `0:${n}`));
  });

  it('a failing message on partition 0 (retry 3 x 1 s, no dead-letter topic) does not move the latency of partition 1', async () => {
    const topic = await createTopic(kafka.admin, unique('failing-partition'), 2);
    const broker = await kafka.connected();
    const publishedAt = new Map<number, number>();
    const latencies: number[] = [];
    let attempts = 0;
    await broker.subscribe<Body>(
      topic,
      (m) => {
        if (m.partition === 0) {
          attempts++;
          throw new Error('poison');
        }
        latencies.push(Date.now() - defined(publishedAt.get(m.body.n), `the publish time of ${m.body.n}`));
      },
      { group: unique('g'), concurrency: 2, retry: { attempts: 3, initialDelayMs: 1_000, multiplier: 1 } },
    );
    await broker.publish<Body>(topic, { n: -1 }, { partition: 0 });
    await waitFor(
      () => attempts >= 1,
      15_000,
      () => 'the failing message never ran',
    );
    const count = 80;
    for (let n = 0; n < count; n++) {
      publishedAt.set(n, Date.now());
      await broker.publish<Body>(topic, { n }, { partition: 1 });
      await sleep(50);
    }
    await waitFor(
      () => latencies.length === count,
      20_000,
      () => `handled ${latencies.length} of ${count} on partition 1`,
    );
    const p50 = percentile(latencies, 50);
    const p90 = percentile(latencies, 90);
    console.log(
      `partition 1 beside a failing partition 0 (${attempts} attempts): p50 ${p50} ms, p90 ${p90} ms, max ${Math.max(...latencies)} ms over ${count} messages`,
    );
    expect(attempts).toBeGreaterThanOrEqual(3);
    expect(p50).toBeLessThan(200);
    expect(p90).toBeLessThan(500);
  });
});

describe('KafkaBroker commits', () => {
  it('disconnect mid-stream commits exactly what was handled: a new member gets the unhandled rest, nothing lost, nothing repeated', async () => {
    const topic = await createTopic(kafka.admin, unique('mid-stream'), 3);
    const group = unique('g');
    const producer = await kafka.connected();
    const first = await kafka.connected();
    const handled = new Map<string, number>();
    const byFirst = new Set<string>();
    let slowStarted = false;
    const count = (m: Message<Body>): string => {
      const id = `${m.partition}:${m.body.n}`;
      handled.set(id, (handled.get(id) ?? 0) + 1);
      return id;
    };
    await first.subscribe<Body>(
      topic,
      async (m) => {
        if (m.partition === 0) {
          slowStarted = true;
          await sleep(400);
        } else await sleep(2);
        byFirst.add(count(m));
      },
      { group, concurrency: 3 },
    );
    const all: string[] = [];
    const publish = async (partition: number, total: number): Promise<void> => {
      for (let n = 0; n < total; n++) all.push(`${partition}:${n}`);
      await Promise.all(Array.from({ length: total }, (_, n) => producer.publish<Body>(topic, { n }, { partition })));
    };
    await publish(0, 10);
    await waitFor(
      () => slowStarted,
      15_000,
      () => 'partition 0 never started',
    );
    await publish(1, 100);
    await publish(2, 100);
    // Partitions 1 and 2 are done long before partition 0's ten 400 ms messages.
    await waitFor(
      () => [...byFirst].filter((id) => !id.startsWith('0:')).length === 200,
      2_500,
      () => `the first member handled ${byFirst.size}, partition 0: ${[...byFirst].filter((id) => id.startsWith('0:')).length}`,
    );
    await first.disconnect();
    const slowHandled = [...byFirst].filter((id) => id.startsWith('0:')).length;
    expect(slowHandled).toBeGreaterThan(0);
    expect(slowHandled).toBeLessThan(10);
    const committed = await committedOffsets(kafka.admin, group, topic);
    expect([committed.get(0), committed.get(1), committed.get(2)]).toEqual([slowHandled, 100, 100]);

    const second = await kafka.connected();
    const bySecond: string[] = [];
    await second.subscribe<Body>(topic, (m) => void bySecond.push(count(m)), { group, concurrency: 3 });
    await waitFor(
      () => handled.size === all.length,
      20_000,
      () => `handled ${handled.size} of ${all.length}`,
    );
    await sleep(500);
    expect([...bySecond].sort()).toEqual(all.filter((id) => !byFirst.has(id)).sort());
    expect([...handled.values()].every((times) => times === 1)).toBe(true);
  });
});

describe('KafkaBroker bounded intake', () => {
  it('consumer.maxQueuedPerPartition bounds what a subscription holds under a burst of 30,000 records (10 ms handler)', async () => {
    const topic = await createTopic(kafka.admin, unique('burst'), 3);
    const producer = await kafka.connected();
    const total = 30_000;
    for (let start = 0; start < total; start += 2_000) {
      await Promise.all(Array.from({ length: 2_000 }, (_, i) => producer.publish<Body>(topic, { n: start + i })));
    }
    for (const maxQueuedPerPartition of [200, undefined]) {
      const broker = await kafka.connected(maxQueuedPerPartition === undefined ? {} : { consumer: { maxQueuedPerPartition } });
      let handled = 0;
      const subscription = load(
        await broker.subscribe<Body>(
          topic,
          async () => {
            await sleep(10);
            handled++;
          },
          { group: unique('g'), fromBeginning: true, concurrency: 3 },
        ),
      );
      const bound = 3 * (maxQueuedPerPartition ?? 5_000);
      let most = 0;
      let mostRunning = 0;
      const until = Date.now() + 5_000;
      while (Date.now() < until) {
        most = Math.max(most, subscription.queued);
        mostRunning = Math.max(mostRunning, subscription.running);
        await sleep(5);
      }
      console.log(`maxQueuedPerPartition ${maxQueuedPerPartition ?? 'default'}: at most ${most} queued (bound ${bound}), ${handled} handled in 5 s`);
      expect(most).toBeLessThanOrEqual(bound);
      // The bound was reached (the burst is far larger), and handlers kept running.
      expect(most).toBeGreaterThan(bound / 2);
      expect(mostRunning).toBe(3);
      expect(handled).toBeGreaterThan(100);
      await broker.disconnect();
    }
  }, 90_000);

  it('consumer.maxQueuedPerPartition must be a whole number >= 1', () => {
    for (const maxQueuedPerPartition of [0, -1, 1.5, Number.NaN]) {
      expect(() => new KafkaBroker({ brokers: KAFKA, consumer: { maxQueuedPerPartition } }), String(maxQueuedPerPartition)).toThrow(ConfigurationError);
    }
  });
});
