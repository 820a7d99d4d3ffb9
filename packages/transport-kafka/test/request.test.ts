import { context, SpanKind } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionError, type Message, PublishError, RemoteError } from '@ktransport/broker';
import { assertReplyTrace, sleep, waitFor } from '@ktransport/broker/testing';
import { KafkaBroker, UnknownTopicError } from '@ktransport/transport-kafka';
import kafkajs, { type Consumer, type IHeaders, type Producer } from 'kafkajs';
import { createTopic, defined, fast, KAFKA, sharedKafka, unique, until } from './helpers.js';

const { Kafka, logLevel } = kafkajs;

const kafka = sharedKafka();

const REPLY_TOPIC = /^ktransport\.reply\.[0-9a-f-]{36}$/;

/** A plain kafkajs client: the foreign requester or responder. */
function rawClient(): InstanceType<typeof Kafka> {
  return new Kafka({ brokers: [KAFKA], clientId: 'raw-kafkajs', logLevel: logLevel.NOTHING });
}

function header(headers: IHeaders | undefined, name: string): string | undefined {
  const value = headers?.[name];
  const last = Array.isArray(value) ? value[value.length - 1] : value;
  return last === undefined ? undefined : String(last);
}

/** A raw consumer of `topic` from its beginning, in a group of its own; resolves once it runs. */
async function rawConsumer(topic: string, onMessage: (message: kafkajs.KafkaMessage) => Promise<void> | void): Promise<Consumer> {
  const consumer = rawClient().consumer({ groupId: unique('raw'), sessionTimeout: 6_000, heartbeatInterval: 250 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let joined = false;
  consumer.on(consumer.events.GROUP_JOIN, () => (joined = true));
  await consumer.run({ eachMessage: async ({ message }) => onMessage(message) });
  await waitFor(
    () => joined,
    20_000,
    () => `raw consumer of ${topic} joined`,
  );
  return consumer;
}

async function rawProducer(): Promise<Producer> {
  const producer = rawClient().producer({ allowAutoTopicCreation: false });
  await producer.connect();
  return producer;
}

async function topicExists(name: string): Promise<boolean> {
  return (await kafka.admin.listTopics()).includes(name);
}

beforeAll(() => void context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()));
afterAll(() => void context.disable());

describe('request–reply over Kafka (reply-to and correlation-id headers)', () => {
  it('two requesting brokers against one responder, requests interleaved: every reply reaches its own caller, each on its own reply topic', async () => {
    const t = await createTopic(kafka.admin, unique('rr-two'), 3);
    const responder = await kafka.connected();
    const replyTopics = new Set<string>();
    await responder.subscribe<{ who: string; n: number }>(
      t,
      (m) => {
        replyTopics.add(defined(m.headers['reply-to'], 'reply-to'));
        return { who: m.body.who, n: m.body.n, square: m.body.n * m.body.n };
      },
      { group: unique('responders'), concurrency: 4 },
    );
    const a = await kafka.connected({ clientId: 'requester-a' });
    const b = await kafka.connected({ clientId: 'requester-b' });
    const calls: Promise<Message<{ who: string; n: number; square: number }>>[] = [];
    const expected: { who: string; n: number }[] = [];
    for (let n = 0; n < 30; n++) {
      for (const [who, broker] of [
        ['a', a],
        ['b', b],
      ] as const) {
        calls.push(broker.request(t, { who, n }, { timeoutMs: 30_000, key: `k${n % 5}` }));
        expected.push({ who, n });
      }
    }
    const replies = await Promise.all(calls);
    replies.forEach((reply, i) => {
      const { who, n } = defined(expected[i], 'an expected reply');
      expect(reply.body).toEqual({ who, n, square: n * n });
    });
    // One reply topic per requesting broker, nobody else's replies on it.
    expect(replyTopics.size).toBe(2);
    for (const name of replyTopics) expect(name).toMatch(REPLY_TOPIC);
  }, 90_000);

  it('the reply topic is created with one partition at the first request and deleted at disconnect; a new connection gets a new one', async () => {
    const t = await createTopic(kafka.admin, unique('rr-cleanup'), 1);
    const responder = await kafka.connected();
    const seen: string[] = [];
    await responder.subscribe(
      t,
      (m) => {
        seen.push(defined(m.headers['reply-to'], 'reply-to'));
        return 'ok';
      },
      { group: unique('g') },
    );
    const requester = new KafkaBroker({ brokers: KAFKA, ...fast });
    await requester.connect();
    try {
      expect((await requester.request(t, 1, { timeoutMs: 30_000 })).body).toBe('ok');
      expect((await requester.request(t, 2, { timeoutMs: 30_000 })).body).toBe('ok');
      const first = defined(seen[0], 'the first reply-to');
      expect(seen[1]).toBe(first);
      const { topics } = await kafka.admin.fetchTopicMetadata({ topics: [first] });
      expect(topics[0]?.partitions).toHaveLength(1);
      await requester.disconnect();
      await until(async () => !(await topicExists(first)), `${first} is deleted`, 20_000);
      await requester.connect();
      expect((await requester.request(t, 3, { timeoutMs: 30_000 })).body).toBe('ok');
      const second = defined(seen[2], 'the reply-to after reconnecting');
      expect(second).toMatch(REPLY_TOPIC);
      expect(second).not.toBe(first);
    } finally {
      await requester.disconnect();
    }
    await until(async () => !(await topicExists(defined(seen[2], 'the second reply topic'))), 'the second reply topic is deleted', 20_000);
  }, 90_000);

  it('a responder never recreates the reply topic of a requester that left: a late reply is dropped (UnknownTopicError to onError), the next requester is answered, ordinary publishes go on', async () => {
    const t = await createTopic(kafka.admin, unique('rr-left'), 1);
    const other = await createTopic(kafka.admin, unique('rr-left-other'), 1);
    const reported: unknown[] = [];
    // Stock settings: the producer may auto-create topics, as the brokers here do (auto.create.topics.enable).
    const responder = await kafka.connected({ onError: (error) => void reported.push(error) });
    const handled: number[] = [];
    const replyTos = new Set<string>();
    await responder.subscribe<number>(
      t,
      async (m) => {
        replyTos.add(defined(m.headers['reply-to'], 'reply-to'));
        if (m.body === 1) await sleep(1_500);
        handled.push(m.body);
        return m.body;
      },
      { group: unique('g'), concurrency: 2 },
    );
    const seen: string[] = [];
    await responder.subscribe(other, (m) => void seen.push(String(m.body)), { group: unique('g') });
    const left = new KafkaBroker({ brokers: KAFKA, ...fast });
    await left.connect();
    expect((await left.request(t, 0, { timeoutMs: 30_000 })).body).toBe(0);
    const leftTopic = defined([...replyTos][0], 'the reply topic of the requester that leaves');
    // The answer to 1 is sent after its requester left.
    const late = left.request(t, 1, { timeoutMs: 30_000 }).catch((e: unknown) => e);
    await sleep(300);
    await left.disconnect();
    expect(await late).toBeInstanceOf(ConnectionError);
    await waitFor(
      () => handled.includes(1) && reported.length === 1,
      20_000,
      () => `handled ${handled.join(',')}, ${reported.length} reports`,
    );
    expect(reported[0]).toBeInstanceOf(UnknownTopicError);
    const next = await kafka.connected();
    const began = Date.now();
    expect((await next.request(t, 2, { timeoutMs: 30_000 })).body).toBe(2);
    expect(Date.now() - began).toBeLessThan(10_000);
    await responder.publish(other, 'still publishing');
    await waitFor(
      () => seen.length === 1,
      20_000,
      () => `${seen.length} ordinary messages`,
    );
    await sleep(500);
    expect(replyTos.size).toBe(2);
    expect(await topicExists(leftTopic)).toBe(false);
  }, 90_000);

  it('a raw kafkajs requester (headers reply-to and correlation-id, its own reply topic) gets its answer from a ktransport responder', async () => {
    const t = await createTopic(kafka.admin, unique('rr-raw-requester'), 1);
    const inbox = await createTopic(kafka.admin, unique('raw-inbox'), 1);
    const responder = await kafka.connected();
    await responder.subscribe<{ n: number }>(t, (m) => ({ double: m.body.n * 2 }), { group: unique('g') });
    const replies: kafkajs.KafkaMessage[] = [];
    const consumer = await rawConsumer(inbox, (message) => void replies.push(message));
    const producer = await rawProducer();
    try {
      for (const n of [1, 2]) {
        await producer.send({
          topic: t,
          messages: [{ value: JSON.stringify({ n }), headers: { 'content-type': 'application/json', 'reply-to': inbox, 'correlation-id': `order-${n}` } }],
        });
      }
      await waitFor(
        () => replies.length === 2,
        20_000,
        () => `${replies.length} replies`,
      );
      const byId = new Map(replies.map((r) => [header(r.headers, 'correlation-id'), r]));
      expect(JSON.parse(String(byId.get('order-1')?.value))).toEqual({ double: 2 });
      expect(JSON.parse(String(byId.get('order-2')?.value))).toEqual({ double: 4 });
      expect(header(byId.get('order-1')?.headers, 'content-type')).toMatch(/^application\/json/);
    } finally {
      await producer.disconnect();
      await consumer.disconnect();
    }
  }, 90_000);

  it('a raw kafkajs responder that answers to reply-to with the correlation-id it got answers a ktransport requester', async () => {
    const t = await createTopic(kafka.admin, unique('rr-raw-responder'), 1);
    const producer = await rawProducer();
    const requests: kafkajs.KafkaMessage[] = [];
    const consumer = await rawConsumer(t, async (message) => {
      requests.push(message);
      const replyTo = header(message.headers, 'reply-to');
      const correlationId = header(message.headers, 'correlation-id');
      if (replyTo === undefined || correlationId === undefined) return;
      const { n } = JSON.parse(String(message.value)) as { n: number };
      await producer.send({
        topic: replyTo,
        messages: [{ value: JSON.stringify({ triple: n * 3 }), headers: { 'content-type': 'application/json', 'correlation-id': correlationId } }],
      });
    });
    try {
      const requester = await kafka.connected();
      const replies = await Promise.all([1, 2, 3].map((n) => requester.request<{ triple: number }>(t, { n }, { timeoutMs: 30_000 })));
      expect(replies.map((r) => r.body.triple)).toEqual([3, 6, 9]);
      const request = defined(requests[0], 'a request');
      expect(header(request.headers, 'reply-to')).toMatch(REPLY_TOPIC);
      expect(header(request.headers, 'correlation-id')).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      await consumer.disconnect();
      await producer.disconnect();
    }
  }, 90_000);

  it('a reply-to that is no Kafka topic name: the reply is refused with a PublishError to onError, the request is acknowledged, the next one answered', async () => {
    const t = await createTopic(kafka.admin, unique('rr-bad-reply-to'), 1);
    const reported: unknown[] = [];
    const responder = await kafka.connected({ onError: (error) => void reported.push(error) });
    let calls = 0;
    await responder.subscribe(t, () => ++calls, { group: unique('g') });
    const producer = await rawProducer();
    try {
      await producer.send({ topic: t, messages: [{ value: '1', headers: { 'reply-to': 'replies/not a topic', 'correlation-id': 'x' } }] });
      await waitFor(
        () => reported.length === 1,
        20_000,
        () => `${reported.length} reports`,
      );
      expect(reported[0]).toBeInstanceOf(PublishError);
      expect(String(reported[0])).toMatch(/reply-to header is not a Kafka topic name/);
      const requester = await kafka.connected();
      expect((await requester.request(t, 2, { timeoutMs: 30_000 })).body).toBe(2);
      expect(calls).toBe(2);
    } finally {
      await producer.disconnect();
    }
  }, 90_000);

  it('a request while not connected rejects with a ConnectionError and creates no reply topic', async () => {
    const broker = new KafkaBroker({ brokers: KAFKA, ...fast });
    const before = (await kafka.admin.listTopics()).filter((name) => REPLY_TOPIC.test(name)).length;
    await expect(broker.request(unique('rr-offline'), 1, { timeoutMs: 5_000 })).rejects.toBeInstanceOf(ConnectionError);
    expect((await kafka.admin.listTopics()).filter((name) => REPLY_TOPIC.test(name)).length).toBeLessThanOrEqual(before);
  });

  it('topicName maps the request topic, not the reply topic: reply-to is the Kafka name the reply is written to', async () => {
    const logical = unique('rr-mapped');
    const mapped = await createTopic(kafka.admin, `app.${logical}`, 1);
    const topicName = (topic: string): string => `app.${topic}`;
    const responder = await kafka.connected({ topicName });
    let replyTo: string | undefined;
    await responder.subscribe<number>(
      logical,
      (m) => {
        replyTo = m.headers['reply-to'];
        return m.body + 1;
      },
      { group: unique('g') },
    );
    const requester = await kafka.connected({ topicName });
    expect((await requester.request(logical, 41, { timeoutMs: 30_000 })).body).toBe(42);
    expect(replyTo).toMatch(REPLY_TOPIC);
    expect(await topicExists(defined(replyTo, 'reply-to'))).toBe(true);
    expect(await topicExists(`app.${defined(replyTo, 'reply-to')}`)).toBe(false);
    expect(mapped).toBe(`app.${logical}`);
  }, 90_000);

  it('a responder failure is a RemoteError; the reply is part of the request’s trace (send → process → reply send → reply process)', async () => {
    const t = await createTopic(kafka.admin, unique('rr-traced'), 1);
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const broker = new KafkaBroker({ brokers: KAFKA, ...fast, tracing: { tracerProvider } });
    await broker.connect();
    try {
      await broker.subscribe<number>(
        t,
        (m) => {
          if (m.body < 0) throw new TypeError('negative');
          return m.body * 10;
        },
        { group: unique('g') },
      );
      const reply = await broker.request<number>(t, 4, { timeoutMs: 30_000 });
      expect(reply.body).toBe(40);
      const send = defined(
        exporter.getFinishedSpans().find((s) => s.name === `send ${t}`),
        'the send span of the request',
      );
      expect(send.kind).toBe(SpanKind.PRODUCER);
      // The spans of that request's trace: its processing, the reply's send and the reply's processing.
      const inTrace = () => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === send.spanContext().traceId);
      await waitFor(
        () => inTrace().length >= 4,
        10_000,
        () =>
          `spans in the trace: ${inTrace()
            .map((s) => s.name)
            .join(', ')}`,
      );
      const onReplyTopic = (prefix: string) => (name: string) => name.startsWith(prefix) && REPLY_TOPIC.test(name.slice(prefix.length));
      const chain = assertReplyTrace(inTrace(), { topic: t, replySend: onReplyTopic('send '), replyProcess: onReplyTopic('process ') });
      expect(chain.send).toBe(send);
      const error = await broker.request(t, -1, { timeoutMs: 30_000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RemoteError);
      expect(error).toMatchObject({ errorType: 'TypeError', remoteMessage: 'negative' });
    } finally {
      await broker.disconnect();
      await tracerProvider.shutdown();
    }
  }, 90_000);
});
