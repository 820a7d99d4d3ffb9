import { describe, expect, it } from 'vitest';
import { DrainTimeoutError, type Message, SubscribeError } from '@ktransport/broker';
import { sleep, waitFor } from '@ktransport/broker/testing';
import { type KafkaBrokerOptions, KafkaBroker, type KafkaLogEntry } from '@ktransport/transport-kafka';
import { committedOffsets, createTopic, defined, sharedKafka, unique, until } from './helpers.js';

interface Body {
  readonly n: number;
}

const kafka = sharedKafka();

const connected = (options?: Partial<KafkaBrokerOptions>): Promise<KafkaBroker> => kafka.connected(options);

async function publishAll(broker: KafkaBroker, topic: string, from: number, to: number, partition?: number): Promise<void> {
  for (let n = from; n < to; n++) await broker.publish<Body>(topic, { n }, partition === undefined ? {} : { partition });
}

describe('KafkaBroker offsets', () => {
  it('never commits past a failed message before it was retried successfully', async () => {
    const topic = await createTopic(kafka.admin, unique('fail'), 1);
    const group = unique('g');
    const broker = await connected();
    const handled: number[] = [];
    let attempts = 0;
    let healed = false;
    await broker.subscribe<Body>(
      topic,
      (m) => {
        if (m.body.n === 3 && !healed) {
          attempts++;
          throw new Error('database unavailable');
        }
        handled.push(m.body.n);
      },
      { group },
    );
    await publishAll(broker, topic, 0, 10);
    await waitFor(
      () => attempts >= 5,
      15_000,
      () => `attempts ${attempts}`,
    );
    for (let sample = 0; sample < 5; sample++) {
      expect((await committedOffsets(kafka.admin, group, topic)).get(0)).toBe(3);
      expect(handled).toEqual([0, 1, 2]);
      await sleep(50);
    }
    healed = true;
    await waitFor(
      () => handled.length === 10,
      15_000,
      () => `handled ${handled.join(',')}`,
    );
    expect(handled).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await until(async () => (await committedOffsets(kafka.admin, group, topic)).get(0) === 10, 'offset 10 is committed', 10_000);
  });

  it('keeps a message whose dead-letter publish failed, and commits past it once it was dead-lettered', async () => {
    const topic = await createTopic(kafka.admin, unique('dlq-src'), 1);
    const dlq = unique('dlq');
    const group = unique('g');
    const broker = await connected({ allowAutoTopicCreation: false, retry: { retries: 1, initialRetryTimeMs: 50 } });
    const handled: number[] = [];
    let attempts = 0;
    await broker.subscribe<Body>(
      topic,
      (m) => {
        if (m.body.n === 3) {
          attempts++;
          throw new Error('poison');
        }
        handled.push(m.body.n);
      },
      { group, retry: { attempts: 2, initialDelayMs: 5 }, deadLetter: dlq },
    );
    await publishAll(broker, topic, 0, 6);
    await waitFor(
      () => attempts >= 4,
      15_000,
      () => `attempts ${attempts}`,
    );
    expect((await committedOffsets(kafka.admin, group, topic)).get(0)).toBe(3);
    expect(handled).toEqual([0, 1, 2]);
    await createTopic(kafka.admin, dlq, 1);
    await waitFor(
      () => handled.length === 5,
      20_000,
      () => `handled ${handled.join(',')}`,
    );
    await until(async () => (await committedOffsets(kafka.admin, group, topic)).get(0) === 6, 'offset 6 is committed', 10_000);
    const dead: Message<Body>[] = [];
    await broker.subscribe<Body>(dlq, (m) => void dead.push(m), { fromBeginning: true });
    await waitFor(
      () => dead.length === 1,
      10_000,
      () => 'dead letter not found',
    );
    const letter = defined(dead[0], 'a dead letter');
    expect(letter.body).toEqual({ n: 3 });
    expect(letter.headers).toMatchObject({
      'x-dead-letter-topic': topic,
      'x-dead-letter-error': 'poison',
      'x-dead-letter-attempts': '2',
      'x-dead-letter-group': group,
    });
  });

  it('stop under load: in-flight handlers finish, their offsets are committed, a new member continues without loss or repeat', async () => {
    const topic = await createTopic(kafka.admin, unique('stop'), 3);
    const group = unique('g');
    const producer = await connected();
    await Promise.all(Array.from({ length: 300 }, (_, n) => producer.publish<Body>(topic, { n })));
    const first = await connected();
    const started = new Set<number>();
    const finished = new Set<number>();
    const count = new Map<number, number>();
    const offsets = new Map<number, number[]>();
    const handler = async (m: Message<Body>): Promise<void> => {
      started.add(m.body.n);
      await sleep(10);
      finished.add(m.body.n);
      count.set(m.body.n, (count.get(m.body.n) ?? 0) + 1);
      const partition = defined(m.partition, 'the partition');
      offsets.set(partition, [...(offsets.get(partition) ?? []), Number(m.offset)]);
    };
    await first.subscribe<Body>(topic, handler, { group, fromBeginning: true, concurrency: 3 });
    await waitFor(
      () => finished.size >= 60,
      15_000,
      () => `handled ${finished.size}`,
    );
    await first.disconnect();
    expect([...started].filter((n) => !finished.has(n))).toEqual([]);
    const committed = await committedOffsets(kafka.admin, group, topic);
    for (const [partition, handledOffsets] of offsets) {
      expect(handledOffsets).toEqual(handledOffsets.map((_, i) => i));
      expect(committed.get(partition), `partition ${partition}`).toBe(handledOffsets.length);
    }
    const second = await connected();
    await second.subscribe<Body>(topic, handler, { group, concurrency: 3 });
    await waitFor(
      () => count.size === 300,
      20_000,
      () => `handled ${count.size}`,
    );
    expect([...count.values()].every((c) => c === 1)).toBe(true);
  });
});

describe('KafkaBroker drain', () => {
  it('drainTimeoutMs bounds disconnect: a handler still running is aborted and its message stays uncommitted for the next member', async () => {
    const topic = await createTopic(kafka.admin, unique('drain-timeout'), 1);
    const group = unique('g');
    const first = await connected({ drainTimeoutMs: 300 });
    let aborted: boolean | undefined;
    let entered = false;
    await first.subscribe<Body>(
      topic,
      async (_m, context) => {
        entered = true;
        await sleep(2_500);
        aborted = context.signal.aborted;
      },
      { group },
    );
    await first.publish<Body>(topic, { n: 1 });
    await waitFor(
      () => entered,
      10_000,
      () => 'handler not started',
    );
    const started = Date.now();
    const error = await first.disconnect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DrainTimeoutError);
    expect((error as DrainTimeoutError).pending).toBe(1);
    expect(Date.now() - started).toBeLessThan(2_000);
    await waitFor(
      () => aborted !== undefined,
      5_000,
      () => 'handler never finished',
    );
    expect(aborted).toBe(true);
    expect((await committedOffsets(kafka.admin, group, topic)).get(0)).toBe(0);
    const again: number[] = [];
    await (await connected()).subscribe<Body>(topic, (m) => void again.push(m.body.n), { group });
    await waitFor(
      () => again.length === 1,
      10_000,
      () => 'not redelivered',
    );
  });
});

describe('KafkaBroker starting offsets', () => {
  it('a new group commits its starting offsets when it joins: nothing published after subscribe resolved is skipped', async () => {
    const topic = await createTopic(kafka.admin, unique('start'), 3);
    const group = unique('g');
    const broker = await connected();
    const got: number[] = [];
    const first = await broker.subscribe<Body>(topic, (m) => void got.push(m.body.n), { group });
    await first.unsubscribe();
    for (let partition = 0; partition < 3; partition++) await broker.publish<Body>(topic, { n: partition }, { partition });
    await broker.subscribe<Body>(topic, (m) => void got.push(m.body.n), { group });
    await waitFor(
      () => got.length === 3,
      10_000,
      () => `received ${got.join(',')}`,
    );
    expect([...got].sort()).toEqual([0, 1, 2]);
  });
});

describe('KafkaBroker consumer options', () => {
  it('redeliveryDelayMs is the pause before a failed message comes again, and the logger is told', async () => {
    const topic = await createTopic(kafka.admin, unique('delay'), 1);
    const logs: KafkaLogEntry[] = [];
    const broker = await connected({ consumer: { redeliveryDelayMs: 2_000 }, logger: (entry) => logs.push(entry) });
    const at: number[] = [];
    await broker.subscribe<Body>(
      topic,
      () => {
        at.push(Date.now());
        if (at.length === 1) throw new Error('once');
      },
      { group: unique('g') },
    );
    await broker.publish<Body>(topic, { n: 1 });
    await waitFor(
      () => at.length === 2,
      15_000,
      () => `attempts ${at.length}`,
    );
    const gap = defined(at[1], 'a second attempt') - defined(at[0], 'a first attempt');
    expect(gap).toBeGreaterThanOrEqual(1_900);
    expect(gap).toBeLessThan(5_000);
    expect(logs.map((entry) => entry.message)).toContainEqual(
      expect.stringMatching(new RegExp(`^message ${topic}\\[0\\]@0 failed and will be delivered again: once$`)),
    );
  });

  it('concurrency is the number of partitions handled at once, each in order', async () => {
    const topic = await createTopic(kafka.admin, unique('concurrency'), 3);
    const producer = await connected();
    for (let partition = 0; partition < 3; partition++) await publishAll(producer, topic, partition * 10, partition * 10 + 3, partition);
    for (const concurrency of [3, 1]) {
      const broker = await connected();
      let running = 0;
      let most = 0;
      const seen: number[] = [];
      await broker.subscribe<Body>(
        topic,
        async (m) => {
          most = Math.max(most, ++running);
          await sleep(150);
          running--;
          seen.push(m.body.n);
        },
        { group: unique('g'), fromBeginning: true, concurrency },
      );
      await waitFor(
        () => seen.length === 9,
        15_000,
        () => `handled ${seen.join(',')}`,
      );
      expect(most, `concurrency ${concurrency}`).toBe(concurrency);
      for (const partition of [0, 1, 2]) {
        const mine = seen.filter((n) => Math.floor(n / 10) === partition);
        expect(mine).toEqual([...mine].sort((a, b) => a - b));
      }
      await broker.disconnect();
    }
  });

  it('fromBeginning reads what was published before a new group existed; by default a new group starts at the end', async () => {
    const topic = await createTopic(kafka.admin, unique('begin'), 1);
    const broker = await connected();
    await publishAll(broker, topic, 0, 3);
    const fromStart: number[] = [];
    const fromEnd: number[] = [];
    await broker.subscribe<Body>(topic, (m) => void fromStart.push(m.body.n), { group: unique('g'), fromBeginning: true });
    await broker.subscribe<Body>(topic, (m) => void fromEnd.push(m.body.n), { group: unique('g') });
    await broker.publish<Body>(topic, { n: 3 });
    await waitFor(
      () => fromStart.length === 4 && fromEnd.length === 1,
      10_000,
      () => `${fromStart.join(',')} / ${fromEnd.join(',')}`,
    );
    expect(fromStart).toEqual([0, 1, 2, 3]);
    expect(fromEnd).toEqual([3]);
  });

  it('sessionTimeoutMs reaches the group coordinator, which refuses one below its minimum', async () => {
    const topic = await createTopic(kafka.admin, unique('session'), 1);
    const broker = await connected({ consumer: { sessionTimeoutMs: 3_000 } });
    const error = await broker.subscribe(topic, () => undefined, { group: unique('g') }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SubscribeError);
    expect(String(error)).toMatch(/session timeout/i);
  });

  it('heartbeatIntervalMs bounds how late a member notices that another one joins', async () => {
    const topic = await createTopic(kafka.admin, unique('heartbeat'), 2);
    const group = unique('g');
    const first = await connected();
    await first.subscribe(topic, () => undefined, { group });
    const second = await connected();
    const started = Date.now();
    await second.subscribe(topic, () => undefined, { group });
    // The first member's next heartbeat (every 250 ms here, 3 s by default) tells it to rejoin.
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('a handler running through a rebalance does not hold up the join (rebalanceTimeoutMs is not waited out); its partition moves on without a late commit', async () => {
    const topic = await createTopic(kafka.admin, unique('rebalance'), 1);
    const group = unique('g');
    // Member ids begin with the client id and partitions go to the lowest id: the partition moves to the newcomer.
    const stuck = await connected({ clientId: 'z-stuck', consumer: { rebalanceTimeoutMs: 2_000 } });
    const handled: string[] = [];
    let running = false;
    await stuck.subscribe<Body>(
      topic,
      async (m) => {
        running = true;
        await sleep(4_000);
        handled.push(`stuck:${m.body.n}`);
      },
      { group },
    );
    // n 2 waits in the first member's queue behind the running n 1.
    await Promise.all([1, 2].map((n) => stuck.publish<Body>(topic, { n })));
    await waitFor(
      () => running,
      10_000,
      () => 'the handler never started',
    );
    const other = await connected({ clientId: 'a-other', consumer: { rebalanceTimeoutMs: 2_000 } });
    const started = Date.now();
    await other.subscribe<Body>(topic, (m) => void handled.push(`other:${m.body.n}`), { group });
    // Before, the running handler held the first member's rejoin until rebalanceTimeoutMs dropped it (about 2 s and more).
    expect(Date.now() - started).toBeLessThan(1_500);
    await waitFor(
      () => handled.includes('other:2') && handled.includes('stuck:1'),
      15_000,
      () => `handled ${handled.join(',')}`,
    );
    // n 1 ran on both members (its partition moved while it ran: at-least-once); the queued n 2 only on the new owner.
    expect([...handled].sort()).toEqual(['other:1', 'other:2', 'stuck:1']);
    await until(async () => (await committedOffsets(kafka.admin, group, topic)).get(0) === 2, 'the new owner committed offset 2', 10_000);
    // The first member's late success is not committed: it would move the group back to offset 1.
    await sleep(1_000);
    expect((await committedOffsets(kafka.admin, group, topic)).get(0)).toBe(2);
  });
});
