import { ConfigurationError, ConnectionError, DrainTimeoutError, type Message, PublishError } from '@ktransport/broker';
import { AmqpBroker, InvalidHeaderError, InvalidTopicError, PayloadTooLargeError, UnroutableError } from '@ktransport/transport-amqp';
import amqplib, { type ConsumeMessage } from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanUp, defined, open, outcome, SHARED_URL, sleep, states, unique, waitFor } from './helpers.js';

/** A raw amqplib connection for looking at what went over the wire. */
async function raw(): Promise<amqplib.ChannelModel> {
  const connection = await amqplib.connect(SHARED_URL);
  connections.push(connection);
  return connection;
}
const connections: amqplib.ChannelModel[] = [];
afterEach(async () => {
  await Promise.all(connections.splice(0).map((c) => c.close().catch(() => undefined)));
});

/** A raw exclusive queue bound to `exchange` with `binding`; returns what it receives. */
async function tap(exchange: string, binding: string): Promise<ConsumeMessage[]> {
  const channel = await (await raw()).createChannel();
  const { queue } = await channel.assertQueue('', { exclusive: true });
  await channel.bindQueue(queue, exchange, binding);
  const got: ConsumeMessage[] = [];
  await channel.consume(queue, (m) => void (m && got.push(m)), { noAck: true });
  return got;
}

describe('what goes on the wire', () => {
  it('publishes the codec bytes to the exchange with the topic as routing key, headers in the table, persistent, with content type, message id and timestamp', async () => {
    const broker = await open({ messageIds: true });
    const t = unique('wire');
    const got = await tap('ktransport', `${t}.#`);
    await broker.publish(
      `${t}/a/b`,
      { hello: 'wörld' },
      { key: 'k-1', headers: { tenant: 'acme', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } },
    );
    await waitFor(
      () => got.length === 1,
      5_000,
      () => 'nothing arrived',
    );
    const m = defined(got[0], 'the message');
    expect(m.fields.routingKey).toBe(`${t}.a.b`);
    expect(m.content.equals(Buffer.from(JSON.stringify({ hello: 'wörld' })))).toBe(true);
    expect(m.properties.contentType).toBe('application/json');
    expect(m.properties.deliveryMode).toBe(2);
    expect(typeof m.properties.messageId).toBe('string');
    expect(Math.abs(Number(m.properties.timestamp) - Date.now() / 1000)).toBeLessThan(60);
    expect(m.properties.headers).toEqual({ tenant: 'acme', 'message-key': 'k-1', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' });
  });

  it('hands a subscriber the topic, key, id, timestamp, headers and the native message', async () => {
    const broker = await open();
    const t = unique('fields');
    const got: Message[] = [];
    await broker.subscribe(`${t}/+`, (m) => void got.push(m));
    await broker.publish(`${t}/x`, 'body', { codec: 'text', key: 'customer-7', headers: { 'message-id': 'id-1', note: 'ü' } });
    await waitFor(
      () => got.length === 1,
      5_000,
      () => 'nothing arrived',
    );
    const m = defined(got[0], 'the message');
    expect(m.topic).toBe(`${t}/x`);
    expect(m.body).toBe('body');
    expect(m.key).toBe('customer-7');
    expect(m.id).toBe('id-1');
    expect(Math.abs(defined(m.timestamp, 'a timestamp') - Date.now())).toBeLessThan(60_000);
    expect(m.headers).toMatchObject({ note: 'ü', 'message-id': 'id-1', 'content-type': 'text/plain; charset=utf-8', 'message-key': 'customer-7' });
    expect((m.raw as ConsumeMessage).fields.routingKey).toBe(`${t}.x`);
  });

  it('turns a foreign table of odd values into string headers and leaves out what has no text form', async () => {
    const broker = await open();
    const t = unique('foreign-headers');
    const got: Message[] = [];
    await broker.subscribe(t, (m) => void got.push(m), { codec: 'bytes' });
    const channel = await (await raw()).createChannel();
    channel.publish('ktransport', t, Buffer.from('x'), {
      headers: {
        text: 'plain',
        count: 42,
        ratio: 1.5,
        flag: true,
        bytes: Buffer.from('utf-8 ✓'),
        binary: Buffer.from([0xff, 0xfe]),
        nested: { a: 1 },
        list: [1, 2],
        nothing: null,
        when: { '!': 'timestamp', value: 1_700_000_000 },
      },
    });
    await waitFor(
      () => got.length === 1,
      5_000,
      () => 'nothing arrived',
    );
    expect(defined(got[0], 'the message').headers).toEqual({ text: 'plain', count: '42', ratio: '1.5', flag: 'true', bytes: 'utf-8 ✓', when: '1700000000' });
  });

  it('refuses topics and filters AMQP cannot carry, before sending, and stays connected', async () => {
    const broker = await open();
    const seen = states(broker);
    for (const topic of ['a.b', 'a*b', `t/${'x'.repeat(260)}`, 'lone\ud800']) {
      const error = await outcome(broker.publish(topic, 1));
      expect(error, topic).toBeInstanceOf(InvalidTopicError);
      expect((error as PublishError).retriable).toBe(false);
    }
    await expect(broker.publish('a/+', 1)).rejects.toBeInstanceOf(PublishError);
    for (const filter of ['a.b', 'a/*', 'a/#/b', `t/${'x'.repeat(260)}`]) {
      await expect(
        broker.subscribe(filter, () => undefined),
        filter,
      ).rejects.toBeInstanceOf(ConfigurationError);
    }
    for (const group of ['a:b', 'amq.x', '']) {
      await expect(
        broker.subscribe(unique('g'), () => undefined, { group }),
        group,
      ).rejects.toBeInstanceOf(ConfigurationError);
    }
    await broker.publish(unique('still-fine'), 1);
    expect(seen).toEqual(['connected']);
  });

  it('refuses headers AMQP cannot carry with a non-retriable InvalidHeaderError, and stays connected', async () => {
    const broker = await open();
    const seen = states(broker);
    const t = unique('bad-headers');
    const bad: Record<string, string>[] = [
      { ['n'.repeat(256)]: 'v' },
      { name: 'lone \udc00' },
      { name: 7 as unknown as string },
      { 'content-type': 'x'.repeat(256) },
      { 'message-id': 'x'.repeat(256) },
      { big: 'v'.repeat(70_000) },
    ];
    for (const headers of bad) {
      // bytes: the codec that keeps the caller's content type.
      const error = await outcome(broker.publish(t, new Uint8Array([1]), { headers, codec: 'bytes' }));
      expect(error, Object.keys(headers).join()).toBeInstanceOf(InvalidHeaderError);
      expect((error as PublishError).retriable).toBe(false);
    }
    await expect(broker.publish(t, 1, { key: 'lone \ud800' })).rejects.toBeInstanceOf(InvalidHeaderError);
    // Control characters are fine in AMQP strings.
    await broker.publish(t, 1, { headers: { control: 'a\u0001b' } });
    expect(seen).toEqual(['connected']);
  });

  it('maxMessageBytes refuses a larger payload before sending', async () => {
    const broker = await open({ maxMessageBytes: 100 });
    const t = unique('max');
    const error = await outcome(broker.publish(t, 'x'.repeat(200), { codec: 'text' }));
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect(error).toMatchObject({ size: 200, limit: 100, retriable: false });
    await broker.publish(t, 'x'.repeat(100), { codec: 'text' });
  });

  it('mandatory: a topic no queue is bound for rejects with UnroutableError; without it the broker drops the message and publish resolves', async () => {
    const broker = await open();
    const t = unique('mandatory');
    const error = await outcome(broker.publish(t, 1, { mandatory: true }));
    expect(error).toBeInstanceOf(UnroutableError);
    expect((error as PublishError).retriable).toBe(false);
    await broker.publish(t, 1);
    const got: number[] = [];
    await broker.subscribe<number>(t, (m) => void got.push(m.body));
    // Several at once, with the caller's message id on one: each is matched with its own return or confirm.
    await Promise.all([broker.publish(t, 2, { mandatory: true }), broker.publish(t, 3, { mandatory: true, headers: { 'message-id': 'mine' } })]);
    const [routed, unrouted] = await Promise.all([
      outcome(broker.publish(t, 4, { mandatory: true })),
      outcome(broker.publish(unique('nobody'), 5, { mandatory: true })),
    ]);
    expect(routed).toBe('ok');
    expect(unrouted).toBeInstanceOf(UnroutableError);
    await waitFor(
      () => got.length === 3,
      5_000,
      () => `got ${got.join(',')}`,
    );
  });

  it('the exchange option: topics go to that exchange, declared durable; an amq. exchange is checked, not declared', async () => {
    const exchange = unique('exchange');
    cleanUp({ exchanges: [exchange] });
    const broker = await open({ exchange });
    const t = unique('custom');
    const got = await tap(exchange, t);
    const mine: number[] = [];
    await broker.subscribe<number>(t, (m) => void mine.push(m.body));
    await broker.publish(t, 1);
    await waitFor(
      () => got.length === 1 && mine.length === 1,
      5_000,
      () => `raw ${got.length}, subscriber ${mine.length}`,
    );
    const check = await (await raw()).createChannel();
    await check.checkExchange(exchange);
    const viaTopic = await open({ exchange: 'amq.topic' });
    const onAmq = await tap('amq.topic', t);
    await viaTopic.publish(t, 2);
    await waitFor(
      () => onAmq.length === 1,
      5_000,
      () => 'nothing on amq.topic',
    );
    await expect(open({ exchange: 'amq.nonexistent' })).rejects.toThrow(/amq\.nonexistent/);
  });

  it('a group is the durable queue "{group}:{filter}", kept after unsubscribe; a subscription without one has an exclusive queue, deleted on unsubscribe', async () => {
    const broker = await open();
    const t = unique('queues');
    const group = unique('g');
    const queue = `${group}:${t}/#`;
    cleanUp({ queues: [queue] });
    const grouped = await broker.subscribe(`${t}/#`, () => undefined, { group });
    const channel = await (await raw()).createChannel();
    expect(await channel.checkQueue(queue)).toMatchObject({ queue, consumerCount: 1 });
    await grouped.unsubscribe();
    expect(await channel.checkQueue(queue)).toMatchObject({ queue, consumerCount: 0 });
    await broker.publish(`${t}/kept`, 1);
    expect(await channel.checkQueue(queue)).toMatchObject({ messageCount: 1 });

    // The exclusive queue is server-named: find it as the one bound with this binding key.
    const alone = unique('own');
    const own = await broker.subscribe(alone, () => undefined);
    await broker.publish(alone, 1, { mandatory: true });
    await own.unsubscribe();
    await expect(broker.publish(alone, 1, { mandatory: true })).rejects.toBeInstanceOf(UnroutableError);
  });

  it('prefetch (subscribe option) bounds what one subscription holds; it must be at least the concurrency', async () => {
    const broker = await open({ prefetch: 1_000 });
    const t = unique('prefetch');
    let most = 0;
    let handled = 0;
    const subscription = await broker.subscribe(
      t,
      async () => {
        await sleep(20);
        handled++;
      },
      { prefetch: 5, concurrency: 2 },
    );
    const load = subscription as unknown as { running: number; queued: number };
    await Promise.all(Array.from({ length: 60 }, (_, n) => broker.publish(t, n)));
    const until = Date.now() + 1_500;
    while (Date.now() < until) {
      most = Math.max(most, load.running + load.queued);
      await sleep(5);
    }
    expect(most).toBe(5);
    expect(handled).toBeGreaterThan(0);
    await expect(broker.subscribe(t, () => undefined, { prefetch: 1, concurrency: 2 })).rejects.toBeInstanceOf(ConfigurationError);
    await expect(broker.subscribe(t, () => undefined, { prefetch: 0 })).rejects.toBeInstanceOf(ConfigurationError);
  });

  it('redeliveryDelayMs: a failed message runs again after the delay', async () => {
    const broker = await open({ redeliveryDelayMs: 400 });
    const t = unique('redelivery-delay');
    const attempts: number[] = [];
    await broker.subscribe(t, () => {
      attempts.push(Date.now());
      if (attempts.length === 1) throw new Error('once');
    });
    await broker.publish(t, 1);
    await waitFor(
      () => attempts.length === 2,
      5_000,
      () => `attempts ${attempts.length}`,
    );
    const [first, second] = attempts as [number, number];
    expect(second - first).toBeGreaterThanOrEqual(380);
  });

  it('a refused subscription (a channel error) does not touch the connection or the other subscriptions', async () => {
    const broker = await open();
    const seen = states(broker);
    const t = unique('isolation');
    const group = unique('g');
    const queue = `${group}:${t}`;
    cleanUp({ queues: [queue] });
    // The group's queue exists already with other arguments: declaring it is refused (406).
    const channel = await (await raw()).createChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-max-length': 10 } });
    const got: number[] = [];
    await broker.subscribe<number>(t, (m) => void got.push(m.body));
    const error = await outcome(broker.subscribe(t, () => undefined, { group }));
    expect(error).toMatchObject({ code: 'SUBSCRIBE_ERROR' });
    expect(String(error)).toMatch(/PRECONDITION_FAILED/);
    await broker.publish(t, 1);
    await waitFor(
      () => got.length === 1,
      5_000,
      () => 'the other subscription got nothing',
    );
    expect(seen).toEqual(['connected']);
  });

  it('a subscription whose queue was deleted under it declares it again after reconnectPeriodMs and goes on', async () => {
    const broker = await open({ reconnectPeriodMs: 600 });
    const t = unique('deleted');
    const group = unique('g');
    const queue = `${group}:${t}`;
    cleanUp({ queues: [queue] });
    const got: number[] = [];
    await broker.subscribe<number>(t, (m) => void got.push(m.body), { group });
    const connection = await raw();
    await (await connection.createChannel()).deleteQueue(queue);
    // Polled with a channel per look: checking a missing queue closes the channel (404).
    const consumers = async (): Promise<number> => {
      const look = await connection.createChannel();
      look.on('error', () => undefined);
      try {
        return (await look.checkQueue(queue)).consumerCount;
      } catch {
        return 0;
      } finally {
        await look.close().catch(() => undefined);
      }
    };
    const deleted = Date.now();
    const until = deleted + 5_000;
    while ((await consumers()) !== 1) {
      if (Date.now() > until) throw new Error('the queue was not declared again with its consumer');
      await sleep(50);
    }
    // Opened again on a new channel after reconnectPeriodMs.
    expect(Date.now() - deleted).toBeGreaterThanOrEqual(550);
    await broker.publish(t, 7);
    await waitFor(
      () => got.includes(7),
      5_000,
      () => `got ${got.join(',')}`,
    );
  });

  it('publish and subscribe before connect or after disconnect reject with a retriable ConnectionError', async () => {
    const broker = new AmqpBroker({ url: SHARED_URL, tracing: false, metrics: false });
    const error = await outcome(broker.publish(unique('x'), 1));
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).retriable).toBe(true);
    await expect(broker.subscribe(unique('x'), () => undefined)).rejects.toBeInstanceOf(ConnectionError);
    await broker.connect();
    await broker.disconnect();
    expect(broker.state).toBe('closed');
    await expect(broker.publish(unique('x'), 1)).rejects.toBeInstanceOf(ConnectionError);
  });

  it('unsubscribe without a group lets received messages finish before the queue is deleted; with a group it requeues what did not start', async () => {
    const broker = await open();
    const t = unique('unsubscribe');
    const finished: number[] = [];
    const own = await broker.subscribe<number>(
      t,
      async (m) => {
        await sleep(50);
        finished.push(m.body);
      },
      { concurrency: 1 },
    );
    for (let n = 0; n < 5; n++) await broker.publish(t, n);
    await waitFor(
      () => finished.length >= 1,
      5_000,
      () => 'nothing handled',
    );
    await own.unsubscribe();
    expect(finished.sort()).toEqual([0, 1, 2, 3, 4]);

    const grouped = unique('grouped');
    const group = unique('g');
    cleanUp({ queues: [`${group}:${grouped}`] });
    const started: number[] = [];
    const first = await broker.subscribe<number>(
      grouped,
      async (m) => {
        started.push(m.body);
        await sleep(100);
      },
      { group, concurrency: 1 },
    );
    for (let n = 0; n < 5; n++) await broker.publish(grouped, n);
    await waitFor(
      () => started.length >= 1,
      5_000,
      () => 'nothing started',
    );
    await first.unsubscribe();
    const rest = new Set<number>();
    await broker.subscribe<number>(grouped, (m) => void rest.add(m.body), { group });
    await waitFor(
      () => [0, 1, 2, 3, 4].every((n) => started.includes(n) || rest.has(n)),
      5_000,
      () => `started ${started.join(',')}, then ${[...rest].join(',')}`,
    );
    expect(started.length).toBeLessThan(5);
  });

  it('disconnect rejects with DrainTimeoutError when a handler outlives drainTimeoutMs, and aborts its signal', async () => {
    const broker = new AmqpBroker({ url: SHARED_URL, drainTimeoutMs: 200, tracing: false, metrics: false });
    await broker.connect();
    const t = unique('drain-timeout');
    let aborted = false;
    let started = false;
    await broker.subscribe(t, (_m, context) => {
      started = true;
      return new Promise<void>((resolve) => {
        context.signal.addEventListener('abort', () => {
          aborted = true;
          resolve();
        });
      });
    });
    await broker.publish(t, 1);
    await waitFor(
      () => started,
      5_000,
      () => 'the handler did not start',
    );
    const error = await outcome(broker.disconnect());
    expect(error).toBeInstanceOf(DrainTimeoutError);
    expect(error).toMatchObject({ pending: 1 });
    expect(aborted).toBe(true);
    expect(broker.state).toBe('closed');
  });
});
