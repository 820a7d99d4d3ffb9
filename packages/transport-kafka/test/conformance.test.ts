import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerError, type ConnectionState } from '@ktransport/broker';
import { conformanceCases, publishEventually, sleep, waitFor } from '@ktransport/broker/testing';
import { KafkaBroker, type KafkaLogEntry } from '@ktransport/transport-kafka';
import kafkajs, { type Admin } from 'kafkajs';
import { connectAdmin, createTopic, defined, fast, lockPrivateKafka, PrivateKafka, unique } from './helpers.js';

const { Partitioners } = kafkajs;

/** A broker of this file's own: the restart case and the mid-stream restart stop and start it. */
const kafka = new PrivateKafka(29092);
let admin: Admin | undefined;
let unlock: (() => Promise<void>) | undefined;
/** How long the mid-stream case keeps the broker down. */
const OUTAGE_MS = 6_000;

beforeAll(async () => {
  // Another file's private broker may be running: wait for it (see lockPrivateKafka).
  unlock = await lockPrivateKafka();
  await kafka.start();
  admin = await connectAdmin(kafka.address);
}, 550_000);

afterAll(async () => {
  await admin?.disconnect();
  await kafka.stop();
  await unlock?.();
}, 60_000);

/** Partitions of every conformance topic. */
const PARTITIONS = 3;
/** The per-partition queue bound of the conformance brokers: small, so that the bounded-intake case reaches it. */
const MAX_QUEUED_PER_PARTITION = 100;

describe('KafkaBroker conformance', () => {
  const cases = conformanceCases({
    createBroker: () =>
      new KafkaBroker({
        brokers: `kafka://${kafka.address}`,
        clientId: 'conformance',
        ...fast,
        consumer: { ...fast.consumer, maxQueuedPerPartition: MAX_QUEUED_PER_PARTITION },
      }),
    // Order per key is order per partition (a key always lands on one partition). A drain gives queued
    // messages back to the group (drainFinishesQueue is not declared). Intake: the bound per partition, on every partition.
    features: {
      wildcards: false,
      groups: true,
      persistent: true,
      orderingPerKey: true,
      redelivery: true,
      intakeBound: MAX_QUEUED_PER_PARTITION * PARTITIONS,
      requestReply: true,
    },
    prepareTopic: async (topic) => void (await createTopic(defined(admin, 'the admin client'), topic, PARTITIONS)),
    restartBroker: () => kafka.restart(),
    waitMs: 20_000,
  });
  for (const c of cases) it(c.name, c.run, c.timeoutMs);

  it('the stuck-key case spreads its keys over the partitions: some of k1..k12 land elsewhere than k0 (murmur2, as the producer)', () => {
    const partitioner = Partitioners.DefaultPartitioner();
    const partitionMetadata = Array.from({ length: PARTITIONS }, (_, partitionId) => ({
      partitionErrorCode: 0,
      partitionId,
      leader: 0,
      replicas: [0],
      isr: [0],
    }));
    const partitionOf = (key: string): number => partitioner({ topic: 't', partitionMetadata, message: { key, value: null } });
    const stuck = partitionOf('k0');
    const elsewhere = Array.from({ length: 12 }, (_, i) => `k${i + 1}`).filter((key) => partitionOf(key) !== stuck);
    expect(elsewhere.length).toBeGreaterThan(0);
  });
});

describe('KafkaBroker across a broker restart in the middle of a stream', () => {
  it('publishers see success or a typed error, never a silent drop; every acknowledged message is consumed', async () => {
    const topic = await createTopic(defined(admin, 'the admin client'), unique('restart-stream'), 3);
    const logs: KafkaLogEntry[] = [];
    const broker = new KafkaBroker({ brokers: kafka.address, ...fast, logger: (entry) => logs.push(entry) });
    const states: ConnectionState[] = [];
    broker.onStateChange((state) => states.push(state));
    await broker.connect();
    let publishing = true;
    try {
      const consumed = new Set<number>();
      await broker.subscribe<{ n: number }>(topic, (m) => void consumed.add(m.body.n), { group: unique('g'), concurrency: 3 });
      const acked = new Set<number>();
      const failures: unknown[] = [];
      let next = 0;
      const publisher = async (): Promise<void> => {
        while (publishing && next < 50_000) {
          const n = next++;
          await broker.publish(topic, { n }, { key: `k${n % 7}` }).then(
            () => acked.add(n),
            (error: unknown) => failures.push(error),
          );
          await sleep(2);
        }
      };
      const publishers = [publisher(), publisher(), publisher(), publisher()];
      await waitFor(
        () => acked.size >= 300,
        20_000,
        () => `acked before restart ${acked.size}`,
      );
      // Down for longer than the consumer's retry budget (fast.retry: about 3.5 s), so that the
      // consumer gives up and is restarted however quickly the broker itself comes back.
      await kafka.stop();
      await sleep(OUTAGE_MS);
      await kafka.start();
      const afterRestart = acked.size;
      await waitFor(
        () => acked.size >= afterRestart + 300,
        60_000,
        () => `acked after restart ${acked.size - afterRestart}`,
      );
      publishing = false;
      await Promise.all(publishers);
      expect(failures.filter((e) => !(e instanceof BrokerError))).toEqual([]);
      await waitFor(
        () => [...acked].every((n) => consumed.has(n)),
        60_000,
        () => `unconsumed ${[...acked].filter((n) => !consumed.has(n)).length} of ${acked.size}`,
      );
      expect(states).toContain('reconnecting');
      await waitFor(
        () => broker.state === 'connected',
        20_000,
        () => `state ${broker.state}`,
      );
    } finally {
      publishing = false;
      await broker.disconnect();
    }
    // The consumer gave up during the outage and was restarted (the crash path ran).
    expect(logs.some((entry) => /crashed: .*; restarting/.test(entry.message))).toBe(true);
  }, 150_000);

  it('a consumer started again after the broker restarted goes on where the engine is: every message handled exactly once', async () => {
    const topic = await createTopic(defined(admin, 'the admin client'), unique('restart-held'), 3);
    const logs: KafkaLogEntry[] = [];
    const broker = new KafkaBroker({ brokers: kafka.address, ...fast, logger: (entry) => logs.push(entry) });
    await broker.connect();
    try {
      const counts = new Map<number, number>();
      const handled = (): number => counts.size;
      await Promise.all(Array.from({ length: 900 }, (_, n) => broker.publish(topic, { n })));
      // About 9 s of work: the engine holds most of it when the broker stops, and handlers go on meanwhile.
      await broker.subscribe<{ n: number }>(
        topic,
        async (m) => {
          await sleep(30);
          counts.set(m.body.n, (counts.get(m.body.n) ?? 0) + 1);
        },
        { group: unique('g'), fromBeginning: true, concurrency: 3 },
      );
      await waitFor(
        () => handled() >= 100,
        20_000,
        () => `handled ${handled()} before the restart`,
      );
      await kafka.stop();
      await sleep(OUTAGE_MS);
      await kafka.start();
      for (let n = 900; n < 1_000; n++) await publishEventually(() => broker.publish(topic, { n }));
      await waitFor(
        () => handled() === 1_000,
        90_000,
        () => `handled ${handled()} of 1000`,
      );
      await sleep(1_000);
      expect([...counts].filter(([, times]) => times > 1).map(([n]) => n)).toEqual([]);
    } finally {
      await broker.disconnect();
    }
    // The consumer gave up during the outage and was started again (the crash path ran).
    expect(logs.some((entry) => /crashed: .*; restarting/.test(entry.message))).toBe(true);
  }, 150_000);
});
