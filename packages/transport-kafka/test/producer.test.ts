import { describe, expect, it } from 'vitest';
import { ConfigurationError, ConnectionError, type Message, PublishError } from '@ktransport/broker';
import { waitFor } from '@ktransport/broker/testing';
import { type KafkaBrokerOptions, KafkaBroker, type KafkaNativeMessage, UnknownTopicError } from '@ktransport/transport-kafka';
import { createTopic, defined, fast, KAFKA, sharedKafka, unique } from './helpers.js';

/** What kafkajs decodes beside the record: the record batch it came in. */
type WithBatch = KafkaNativeMessage & { batchContext: { firstOffset: string; producerId: string } };

const kafka = sharedKafka();

const connected = (options?: Partial<KafkaBrokerOptions>): Promise<KafkaBroker> => kafka.connected(options);

/** Subscribes from the beginning and collects what arrives. */
async function collect<T>(broker: KafkaBroker, topic: string): Promise<Message<T>[]> {
  const got: Message<T>[] = [];
  await broker.subscribe<T>(topic, (m) => void got.push(m), { fromBeginning: true });
  return got;
}

const batchOf = (m: Message): string => (m.raw as WithBatch).batchContext.firstOffset;

describe('KafkaBroker publish', () => {
  it('sends headers as Kafka headers, the key as the record key, and honours an explicit partition', async () => {
    const broker = await connected();
    const topic = await createTopic(kafka.admin, unique('fields'), 3);
    const got = await collect<{ n: number }>(broker, topic);
    await broker.publish(topic, { n: 1 }, { key: 'order-7', partition: 2, headers: { 'x-tenant': 'acmé' } });
    await waitFor(
      () => got.length === 1,
      10_000,
      () => 'nothing received',
    );
    const m = defined(got[0], 'a received message');
    expect(m).toMatchObject({ topic, body: { n: 1 }, key: 'order-7', partition: 2, offset: '0' });
    expect(m.headers).toMatchObject({ 'x-tenant': 'acmé', 'content-type': 'application/json' });
    expect(m.id).toBe(m.headers['message-id']);
    expect(Math.abs((m.timestamp ?? 0) - Date.now())).toBeLessThan(60_000);
  });

  it('sends every message with the same key to the same partition', async () => {
    const broker = await connected();
    const topic = await createTopic(kafka.admin, unique('keys'), 3);
    const got = await collect<{ k: string }>(broker, topic);
    await Promise.all(Array.from({ length: 60 }, (_, i) => broker.publish(topic, { k: `k${i % 3}` }, { key: `k${i % 3}` })));
    await waitFor(
      () => got.length === 60,
      10_000,
      () => `received ${got.length}`,
    );
    for (const key of ['k0', 'k1', 'k2']) expect(new Set(got.filter((m) => m.key === key).map((m) => m.partition)).size).toBe(1);
  });

  it('rejects a partition the topic does not have instead of dropping the message', async () => {
    const broker = await connected();
    const topic = await createTopic(kafka.admin, unique('nopartition'), 3);
    const error = await broker.publish(topic, { n: 1 }, { partition: 7 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PublishError);
    expect(String(error)).toMatch(/partition 7 does not exist/);
    await expect(broker.publish(topic, { n: 1 }, { partition: -1 })).rejects.toBeInstanceOf(PublishError);
  });

  it('compression gzip shrinks a batch below the topic limit that rejects it uncompressed', async () => {
    const topic = await createTopic(kafka.admin, unique('gzip'), 1, { 'max.message.bytes': '50000' });
    const payload = new Uint8Array(200_000).fill(7);
    const plain = await connected();
    const error = await plain.publish(topic, payload, { codec: 'bytes' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PublishError);
    expect(String(error)).toMatch(/larger than the max message size/);
    const gzip = await connected({ producer: { compression: 'gzip' } });
    const got = await collect<Uint8Array>(gzip, topic);
    await gzip.publish(topic, payload, { codec: 'bytes' });
    await waitFor(
      () => got.length === 1,
      10_000,
      () => 'nothing received',
    );
    expect(defined(got[0], 'a received message').body).toEqual(payload);
  });

  it('lingerMs holds a publish so that later ones share its request; each resolves once acknowledged', async () => {
    const topic = await createTopic(kafka.admin, unique('linger'), 1);
    for (const [lingerMs, sameBatch] of [
      [300, true],
      [0, false],
    ] as const) {
      const broker = await connected({ producer: { lingerMs } });
      const got = await collect<{ n: number; linger: number }>(broker, topic);
      const started = Date.now();
      const first = broker.publish(topic, { n: 1, linger: lingerMs }).then(() => Date.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const second = broker.publish(topic, { n: 2, linger: lingerMs });
      const [firstMs] = await Promise.all([first, second]);
      await waitFor(
        () => got.filter((m) => m.body.linger === lingerMs).length === 2,
        10_000,
        () => `received ${got.length}`,
      );
      const mine = got.filter((m) => m.body.linger === lingerMs);
      expect(batchOf(defined(mine[0], 'a first message')) === batchOf(defined(mine[1], 'a second message'))).toBe(sameBatch);
      if (sameBatch) expect(firstMs).toBeGreaterThanOrEqual(250);
      else expect(firstMs).toBeLessThan(250);
    }
  });

  it('maxBatchMessages and maxBatchBytes split concurrent publishes into several requests', async () => {
    const cases: [string, Partial<KafkaBrokerOptions>, number][] = [
      ['default', {}, 1],
      ['maxBatchMessages 3', { producer: { maxBatchMessages: 3 } }, 4],
      ['maxBatchBytes 2500', { producer: { maxBatchBytes: 2_500 } }, 5],
    ];
    for (const [name, options, minBatches] of cases) {
      const topic = await createTopic(kafka.admin, unique('batch'), 1);
      const broker = await connected(options);
      const got = await collect<string>(broker, topic);
      await Promise.all(Array.from({ length: 10 }, () => broker.publish(topic, 'x'.repeat(1_000), { codec: 'text' })));
      await waitFor(
        () => got.length === 10,
        10_000,
        () => `${name}: received ${got.length}`,
      );
      const batches = new Set(got.map(batchOf)).size;
      if (minBatches === 1) expect(batches, name).toBe(1);
      else expect(batches, name).toBeGreaterThanOrEqual(minBatches);
    }
  });

  it('a record larger than the topic accepts is refused alone: publishes sent in the same request still succeed', async () => {
    const topic = await createTopic(kafka.admin, unique('too-large'), 3, { 'max.message.bytes': '20000' });
    const broker = await connected();
    const got = await collect<{ n: number }>(broker, topic);
    const big = 'x'.repeat(30_000);
    // Issued together, they share one request; before, the brokers' refusal of the big one failed them all.
    const results = await Promise.allSettled([
      ...Array.from({ length: 6 }, (_, n) => broker.publish(topic, { n }, { key: `k${n}` })),
      broker.publish(topic, { n: 99, big }, { key: 'k99' }),
      broker.publish(topic, { n: 6 }, { key: 'k6' }),
    ]);
    const big99 = defined(results[6], 'the outcome of the big publish');
    expect(big99.status).toBe('rejected');
    const error = (big99 as PromiseRejectedResult).reason as PublishError;
    expect(error).toBeInstanceOf(PublishError);
    expect(error.retriable).toBe(false);
    expect(String(error)).toMatch(/larger than the topic accepts/);
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
    await waitFor(
      () => new Set(got.map((m) => m.body.n)).size === 7,
      10_000,
      () => `received ${got.map((m) => m.body.n).join(',')}`,
    );
    expect(got.some((m) => m.body.n === 99)).toBe(false);
  });

  it('on a topic that refuses even small records, a refused one is told apart from its batch-mates after the first refusal', async () => {
    const topic = await createTopic(kafka.admin, unique('tiny-limit'), 1, { 'max.message.bytes': '3000' });
    const broker = await connected();
    const round = (): Promise<PromiseSettledResult<void>[]> =>
      Promise.allSettled([broker.publish(topic, { n: 1 }), broker.publish(topic, { n: 2, big: 'y'.repeat(5_000) }), broker.publish(topic, { n: 3 })]);
    // Records below 16 KiB share their request's promise: the first refusal can only say that it may have been written.
    const first = await round();
    for (const result of first) {
      if (result.status === 'fulfilled') continue;
      expect(result.reason).toBeInstanceOf(PublishError);
      expect((result.reason as PublishError).retriable).toBe(true);
    }
    // Learned: from now on a record that size settles on its own, so publishing again never loops.
    const second = await round();
    expect(second.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(((second[1] as PromiseRejectedResult).reason as PublishError).retriable).toBe(false);
  });

  it('acks 0 is fire-and-forget: a message the broker refuses still resolves', async () => {
    const topic = await createTopic(kafka.admin, unique('acks'), 1, { 'max.message.bytes': '10000' });
    const big = new Uint8Array(50_000).fill(1);
    const acked = await connected({ producer: { idempotent: false, acks: 1 } });
    await expect(acked.publish(topic, big, { codec: 'bytes' })).rejects.toBeInstanceOf(PublishError);
    const fireAndForget = await connected({ producer: { idempotent: false, acks: 0 } });
    await expect(fireAndForget.publish(topic, big, { codec: 'bytes' })).resolves.toBeUndefined();
  });

  it('writes with an idempotent producer id by default and without one when idempotent is false', async () => {
    const topic = await createTopic(kafka.admin, unique('idempotent'), 1);
    const reader = await connected();
    const got = await collect<{ idempotent: boolean }>(reader, topic);
    await (await connected()).publish(topic, { idempotent: true });
    await (await connected({ producer: { idempotent: false } })).publish(topic, { idempotent: false });
    await waitFor(
      () => got.length === 2,
      10_000,
      () => `received ${got.length}`,
    );
    const producerId = (idempotent: boolean): string =>
      (
        defined(
          got.find((m) => m.body.idempotent === idempotent),
          `the message with idempotent: ${idempotent}`,
        ).raw as WithBatch
      ).batchContext.producerId;
    expect(producerId(true)).not.toBe('-1');
    expect(producerId(false)).toBe('-1');
    expect(() => new KafkaBroker({ brokers: KAFKA, producer: { acks: 1 } })).toThrow(ConfigurationError);
  });

  it('allowAutoTopicCreation false: a missing topic is an UnknownTopicError on publish and subscribe', async () => {
    const strict = await connected({ allowAutoTopicCreation: false, retry: { retries: 1, initialRetryTimeMs: 50 } });
    const missing = unique('missing');
    const publishError = await strict.publish(missing, { n: 1 }).catch((e: unknown) => e);
    expect(publishError).toBeInstanceOf(UnknownTopicError);
    expect((publishError as UnknownTopicError).topic).toBe(missing);
    await expect(strict.subscribe(missing, () => undefined, { group: unique('g') })).rejects.toBeInstanceOf(UnknownTopicError);
    const lenient = await connected();
    await expect(lenient.publish(unique('autocreated'), { n: 1 })).resolves.toBeUndefined();
    const created = unique('autocreated-by-subscribe');
    const got: number[] = [];
    await lenient.subscribe<{ n: number }>(created, (m) => void got.push(m.body.n), { group: unique('g') });
    await lenient.publish(created, { n: 2 });
    await waitFor(
      () => got.length === 1,
      10_000,
      () => 'nothing received on the auto-created topic',
    );
  });

  it('refuses to publish or subscribe while not connected, and bad topics', async () => {
    const broker = new KafkaBroker({ brokers: KAFKA, ...fast });
    await expect(broker.publish('t', 1)).rejects.toBeInstanceOf(ConnectionError);
    await broker.connect();
    await expect(broker.publish('bad topic!', 1)).rejects.toBeInstanceOf(PublishError);
    await expect(broker.subscribe('a/+', () => undefined)).rejects.toBeInstanceOf(ConfigurationError);
    await expect(broker.subscribe('ok', () => undefined, { concurrency: 0 })).rejects.toBeInstanceOf(ConfigurationError);
    await broker.disconnect();
    await expect(broker.publish('t', 1)).rejects.toBeInstanceOf(ConnectionError);
    await expect(broker.subscribe('t', () => undefined)).rejects.toBeInstanceOf(ConnectionError);
  });
});

describe('KafkaBroker with the core options', () => {
  it('uses defaultCodec, publish middleware and subscribe middleware over Kafka', async () => {
    const calls: string[] = [];
    const broker = await connected({
      defaultCodec: 'msgpack',
      publishMiddleware: [
        (next) => async (message) => {
          message.headers['x-published-by'] = 'middleware';
          await next(message);
        },
      ],
      middleware: [
        (next) => async (message, context) => {
          calls.push(message.topic);
          await next(message, context);
        },
      ],
    });
    const topic = await createTopic(kafka.admin, unique('core-options'), 1);
    const got = await collect<{ n: number }>(broker, topic);
    await broker.publish(topic, { n: 5 });
    await waitFor(
      () => got.length === 1,
      10_000,
      () => 'nothing received',
    );
    const received = defined(got[0], 'a received message');
    expect(received.body).toEqual({ n: 5 });
    expect(received.headers).toMatchObject({ 'content-type': 'application/msgpack', 'x-published-by': 'middleware' });
    expect(calls).toEqual([topic]);
  });
});

describe('KafkaBroker topicName', () => {
  it('maps the topics of publish, subscribe, dead-letter and createTopics to Kafka names; handlers see their own', async () => {
    const prefix = unique('map');
    const [orders, dead] = [`${prefix}/orders/created`, `${prefix}/orders/dead`];
    const broker = await connected({ topicName: (topic) => topic.replaceAll('/', '.') });
    await broker.createTopics([
      { topic: orders, partitions: 1 },
      { topic: dead, partitions: 1 },
    ]);
    const { topics } = await kafka.admin.fetchTopicMetadata({ topics: [`${prefix}.orders.created`, `${prefix}.orders.dead`] });
    expect(topics).toHaveLength(2);
    const got: Message<{ n: number }>[] = [];
    const deadLetters: Message<{ n: number }>[] = [];
    await broker.subscribe<{ n: number }>(
      orders,
      (m) => {
        got.push(m);
        if (m.body.n === 2) throw new Error('rejected');
      },
      { group: unique('g'), deadLetter: dead },
    );
    await broker.subscribe<{ n: number }>(dead, (m) => void deadLetters.push(m), { fromBeginning: true });
    await broker.publish(orders, { n: 1 });
    await broker.publish(orders, { n: 2 });
    await waitFor(
      () => got.length === 2 && deadLetters.length === 1,
      10_000,
      () => `got ${got.length} dead ${deadLetters.length}`,
    );
    expect(got.map((m) => m.topic)).toEqual([orders, orders]);
    expect(deadLetters[0]).toMatchObject({ topic: dead, body: { n: 2 }, headers: { 'x-dead-letter-topic': orders } });
    const plain = await connected();
    await expect(plain.publish(orders, { n: 3 })).rejects.toThrow(/not a valid Kafka topic name/);
  });
});

describe('KafkaBroker topic administration', () => {
  it('creates topics with partitions and configs, leaves existing ones, and types refusals', async () => {
    const broker = await connected();
    const topic = unique('kafka.admin');
    await broker.createTopics({ topic, partitions: 4, config: { 'retention.ms': '3600000' } });
    await broker.createTopics([{ topic, partitions: 4 }]);
    const { topics } = await kafka.admin.fetchTopicMetadata({ topics: [topic] });
    expect(defined(topics[0], 'the topic metadata').partitions).toHaveLength(4);
    const [config] = (await kafka.admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: topic, configNames: ['retention.ms'] }] }))
      .resources;
    expect(defined(defined(config, 'the topic config').configEntries[0], 'the retention.ms entry').configValue).toBe('3600000');
    const error = await broker.createTopics({ topic: unique('rf'), replicationFactor: 2 }).catch((e: unknown) => e);
    expect(String(error)).toMatch(/AdminError: cannot create .*replication-factor is invalid/i);
    await expect(broker.createTopics({ topic: 'no/slash' })).rejects.toBeInstanceOf(ConfigurationError);
  });
});
