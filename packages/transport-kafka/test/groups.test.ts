import { describe, expect, it } from 'vitest';
import type { Message } from '@ktransport/broker';
import { sleep, waitFor } from '@ktransport/broker/testing';
import { KafkaBroker } from '@ktransport/transport-kafka';
import { createTopic, defined, sharedKafka, unique } from './helpers.js';

interface Body {
  readonly n: number;
}

const kafka = sharedKafka();

/** Each broker stands for one service instance (its own connections). */
const instance = (): Promise<KafkaBroker> => kafka.connected();

async function publishRange(broker: KafkaBroker, topic: string, from: number, to: number, chunk = 250): Promise<void> {
  for (let start = from; start < to; start += chunk) {
    await Promise.all(
      Array.from({ length: Math.min(chunk, to - start) }, (_, i) => broker.publish<Body>(topic, { n: start + i }, { key: `k${(start + i) % 17}` })),
    );
  }
}

/** Counts deliveries per message number. */
class Tally {
  readonly counts = new Map<number, number>();
  readonly add = (m: Message<Body>): void => void this.counts.set(m.body.n, (this.counts.get(m.body.n) ?? 0) + 1);
  get size(): number {
    return this.counts.size;
  }
  duplicates(): number[] {
    return [...this.counts].filter(([, c]) => c > 1).map(([n]) => n);
  }
}

describe('KafkaBroker consumer groups', () => {
  it('two groups on one topic each receive all 1,000 messages', async () => {
    const topic = await createTopic(kafka.admin, unique('two-groups'), 3);
    const [a, b] = [new Tally(), new Tally()];
    await (await instance()).subscribe<Body>(topic, a.add, { group: unique('ga') });
    await (await instance()).subscribe<Body>(topic, b.add, { group: unique('gb') });
    await publishRange(await instance(), topic, 0, 1_000);
    await waitFor(
      () => a.size === 1_000 && b.size === 1_000,
      20_000,
      () => `a=${a.size} b=${b.size}`,
    );
  });

  it('two members of one group split 1,000 messages: none lost, none handled twice', async () => {
    const topic = await createTopic(kafka.admin, unique('split'), 3);
    const group = unique('g');
    const [first, second] = [new Tally(), new Tally()];
    await (await instance()).subscribe<Body>(topic, first.add, { group });
    await (await instance()).subscribe<Body>(topic, second.add, { group });
    await publishRange(await instance(), topic, 0, 1_000);
    const union = (): number => new Set([...first.counts.keys(), ...second.counts.keys()]).size;
    await waitFor(
      () => union() === 1_000,
      20_000,
      () => `first=${first.size} second=${second.size}`,
    );
    await sleep(300);
    expect(first.size + second.size).toBe(1_000);
    expect([...first.duplicates(), ...second.duplicates()]).toEqual([]);
    expect(first.size).toBeGreaterThan(0);
    expect(second.size).toBeGreaterThan(0);
  });

  it('a member joins and another leaves in the middle of 10,000 messages: none lost', async () => {
    const topic = await createTopic(kafka.admin, unique('churn'), 3);
    const group = unique('g');
    const seen = new Tally();
    const byJoiner = new Tally();
    const slow =
      (tally?: Tally) =>
      async (m: Message<Body>): Promise<void> => {
        seen.add(m);
        tally?.add(m);
        if (m.body.n % 100 === 0) await sleep(5);
      };
    const leaving = await instance();
    await leaving.subscribe<Body>(topic, slow(), { group });
    const publishing = publishRange(await instance(), topic, 0, 10_000, 500);
    await waitFor(
      () => seen.size >= 2_500,
      30_000,
      () => `before join ${seen.size}`,
    );
    await (await instance()).subscribe<Body>(topic, slow(byJoiner), { group });
    await waitFor(
      () => seen.size >= 5_000,
      30_000,
      () => `before leave ${seen.size}`,
    );
    await leaving.disconnect();
    await publishing;
    await waitFor(
      () => seen.size === 10_000,
      30_000,
      () => `after leave ${seen.size}`,
    );
    expect(byJoiner.size).toBeGreaterThan(0);
  });

  it('one group shared by subscriptions to different topics gives each topic to its own subscribers', async () => {
    const [t1, t2] = [await createTopic(kafka.admin, unique('shared-1'), 3), await createTopic(kafka.admin, unique('shared-2'), 3)];
    const group = unique('service');
    const [got1, got2] = [new Tally(), new Tally()];
    for (let i = 0; i < 2; i++) {
      const broker = await instance();
      await broker.subscribe<Body>(t1, got1.add, { group });
      await broker.subscribe<Body>(t2, got2.add, { group });
    }
    const producer = await instance();
    await publishRange(producer, t1, 0, 100);
    await publishRange(producer, t2, 0, 100);
    await waitFor(
      () => got1.size === 100 && got2.size === 100,
      20_000,
      () => `t1=${got1.size} t2=${got2.size}`,
    );
  });

  it('a subscription without a group sees every message, like every other one without a group', async () => {
    const topic = await createTopic(kafka.admin, unique('fanout'), 3);
    const broker = await instance();
    const tallies = [new Tally(), new Tally()];
    const subs = [];
    for (const t of tallies) subs.push(await broker.subscribe<Body>(topic, t.add));
    expect(new Set(subs.map((s) => s.group)).size).toBe(2);
    await publishRange(broker, topic, 0, 100);
    await waitFor(
      () => tallies.every((t) => t.size === 100),
      10_000,
      () => tallies.map((t) => t.size).join(','),
    );
    for (const sub of subs) await sub.unsubscribe();
    // The generated groups are removed when their subscription ends.
    const { groups } = await kafka.admin.describeGroups(subs.map((s) => defined(s.group, 'a generated group')));
    expect(groups.map((g) => g.state)).toEqual(['Dead', 'Dead']);
  });
});
