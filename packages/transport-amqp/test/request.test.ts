import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { ConnectionError, RemoteError } from '@ktransport/broker';
import { AmqpBroker, InvalidHeaderError } from '@ktransport/transport-amqp';
import amqplib, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';
import { open, outcome, SHARED_URL, sleep, unique, waitFor } from './helpers.js';

const run = promisify(execFile);

const foreign: ChannelModel[] = [];
afterEach(async () => {
  await Promise.all(foreign.splice(0).map((c) => c.close().catch(() => undefined)));
});

/** A plain amqplib connection and channel: a foreign requester or responder. */
async function raw(): Promise<Channel> {
  const connection = await amqplib.connect(SHARED_URL);
  foreign.push(connection);
  return connection.createChannel();
}

/** The routing key of a ktransport topic on the `ktransport` exchange. */
const key = (topic: string): string => topic.replaceAll('/', '.');

/** Whether `queue` exists, asked from a connection of its own (a passive declare that fails closes its channel). */
async function queueExists(queue: string): Promise<boolean> {
  const connection = await amqplib.connect(SHARED_URL);
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    return await channel.checkQueue(queue).then(
      () => true,
      // 405 RESOURCE_LOCKED: it exists, exclusive to another connection; 404 NOT_FOUND: it does not.
      (error: unknown) => (error as { code?: unknown }).code !== 404,
    );
  } finally {
    await connection.close().catch(() => undefined);
  }
}

describe('request–reply over AMQP 0.9.1 (reply_to, correlation_id)', () => {
  it('answers a classic amqplib RPC client: its exclusive server-named queue, through the default exchange, with its correlation_id', async () => {
    const t = `${unique('rr-foreign-requester')}/square`;
    const responder = await open();
    await responder.subscribe<{ n: number }>(t, (m) => {
      if (m.body.n < 0) throw new RangeError('no negative numbers');
      return { square: m.body.n * m.body.n };
    });
    const channel = await raw();
    const { queue } = await channel.assertQueue('', { exclusive: true });
    expect(queue).toMatch(/^amq\.gen-/);
    const replies: ConsumeMessage[] = [];
    await channel.consume(queue, (m) => void (m && replies.push(m)), { noAck: true });
    for (const [n, correlationId] of [
      [3, 'order-1'],
      [-1, 'order-2'],
    ] as const) {
      channel.publish('ktransport', key(t), Buffer.from(JSON.stringify({ n })), { contentType: 'application/json', replyTo: queue, correlationId });
    }
    await waitFor(
      () => replies.length === 2,
      5_000,
      () => `${replies.length} replies`,
    );
    const byId = new Map(replies.map((m) => [m.properties.correlationId as unknown, m]));
    const answer = byId.get('order-1');
    const failure = byId.get('order-2');
    // Through the default exchange, by the queue's name.
    expect(answer?.fields.exchange).toBe('');
    expect(answer?.fields.routingKey).toBe(queue);
    expect(JSON.parse(String(answer?.content))).toEqual({ square: 9 });
    expect(answer?.properties.contentType).toMatch(/^application\/json/);
    // Carried as the AMQP properties, not as table entries besides them.
    expect(answer?.properties.headers?.['correlation-id']).toBeUndefined();
    expect(failure?.content.byteLength).toBe(0);
    expect(failure?.properties.headers).toMatchObject({ 'x-reply-error-type': 'RangeError', 'x-reply-error': 'no negative numbers' });
  });

  it('answers an amqplib requester that uses Direct Reply-to (amq.rabbitmq.reply-to)', async () => {
    const t = unique('rr-direct');
    const responder = await open();
    await responder.subscribe<{ n: number }>(t, (m) => ({ half: m.body.n / 2 }));
    const channel = await raw();
    const replies: ConsumeMessage[] = [];
    // Direct Reply-to: consume the pseudo-queue in no-ack mode, then publish on the same channel.
    await channel.consume('amq.rabbitmq.reply-to', (m) => void (m && replies.push(m)), { noAck: true });
    channel.publish('ktransport', key(t), Buffer.from(JSON.stringify({ n: 9 })), {
      contentType: 'application/json',
      replyTo: 'amq.rabbitmq.reply-to',
      correlationId: 'direct-1',
    });
    await waitFor(
      () => replies.length === 1,
      5_000,
      () => 'no reply',
    );
    expect(JSON.parse(String(replies[0]?.content))).toEqual({ half: 4.5 });
    expect(replies[0]?.properties.correlationId).toBe('direct-1');
  });

  it('answers amqp-publish --reply-to (amqp-tools, no correlation id): the reply goes to the named queue', async () => {
    const t = unique('rr-amqp-publish');
    const responder = await open();
    await responder.subscribe<{ n: number }>(t, (m) => ({ double: m.body.n * 2 }));
    const channel = await raw();
    const { queue } = await channel.assertQueue(unique('rr-cli-inbox'), { exclusive: true, autoDelete: true });
    const replies: ConsumeMessage[] = [];
    await channel.consume(queue, (m) => void (m && replies.push(m)), { noAck: true });
    await run('amqp-publish', ['-u', SHARED_URL, '-e', 'ktransport', '-r', key(t), '-C', 'application/json', '-t', queue, '-b', JSON.stringify({ n: 21 })], {
      timeout: 15_000,
    });
    await waitFor(
      () => replies.length === 1,
      5_000,
      () => 'no reply',
    );
    expect(JSON.parse(String(replies[0]?.content))).toEqual({ double: 42 });
    expect(replies[0]?.properties.correlationId).toBeUndefined();
  });

  it('gets its reply from an amqplib responder that answers on reply_to with the correlation_id; its own queue is removed on disconnect', async () => {
    const t = unique('rr-foreign-responder');
    const channel = await raw();
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, 'ktransport', key(t));
    const seen: ConsumeMessage[] = [];
    await channel.consume(queue, (m) => {
      if (!m) return;
      seen.push(m);
      const { n } = JSON.parse(String(m.content)) as { n: number };
      const correlationId = m.properties.correlationId as string;
      if (n < 0) {
        // An error reply: the table entries the core reads.
        channel.sendToQueue(m.properties.replyTo as string, Buffer.alloc(0), {
          correlationId,
          headers: { 'x-reply-error-type': 'RangeError', 'x-reply-error': 'no negatives' },
        });
      } else {
        channel.sendToQueue(m.properties.replyTo as string, Buffer.from(JSON.stringify({ triple: n * 3 })), { contentType: 'application/json', correlationId });
      }
      channel.ack(m);
    });
    const requester = await open();
    const replies = await Promise.all([1, 2, 3].map((n) => requester.request<{ triple: number }>(t, { n }, { timeoutMs: 5_000 })));
    expect(replies.map((r) => r.body.triple)).toEqual([3, 6, 9]);
    const error = await outcome(requester.request(t, { n: -1 }, { timeoutMs: 5_000 }));
    expect(error).toBeInstanceOf(RemoteError);
    expect(error).toMatchObject({ errorType: 'RangeError', remoteMessage: 'no negatives' });
    const request = seen[0];
    const replyTo = request?.properties.replyTo as string;
    expect(replyTo).toMatch(/^ktransport\.reply\.[0-9a-f-]{36}$/);
    expect(request?.properties.correlationId).toMatch(/^[0-9a-f-]{36}$/);
    expect(request?.properties.headers?.['reply-to']).toBeUndefined();
    expect(request?.properties.headers?.['correlation-id']).toBeUndefined();
    // One reply queue for every request of the connection, gone with it.
    expect(new Set(seen.map((m) => m.properties.replyTo as unknown))).toEqual(new Set([replyTo]));
    expect(await queueExists(replyTo)).toBe(true);
    await requester.disconnect();
    expect(await queueExists(replyTo)).toBe(false);
  });

  it('a reply-to or correlation-id header over 255 UTF-8 bytes (an AMQP short string) is refused before sending; the connection stays up', async () => {
    const broker = await open();
    const t = unique('rr-long');
    for (const name of ['reply-to', 'correlation-id']) {
      const error = await outcome(broker.publish(t, 1, { headers: { [name]: 'é'.repeat(128) } }));
      expect(error).toBeInstanceOf(InvalidHeaderError);
      expect(error).toMatchObject({ header: name, reason: 'too-long' });
    }
    await broker.subscribe(t, () => 'still up');
    expect((await broker.request(t, 1, { timeoutMs: 5_000 })).body).toBe('still up');
  });

  it('request() on a broker that is not connected (never, or no more) rejects with a ConnectionError', async () => {
    const idle = new AmqpBroker({ url: SHARED_URL, tracing: false, metrics: false });
    await expect(idle.request(unique('rr-idle'), 1, { timeoutMs: 1_000 })).rejects.toBeInstanceOf(ConnectionError);
    const broker = await open();
    const t = unique('rr-after');
    await broker.subscribe(t, () => 'up');
    expect((await broker.request(t, 1, { timeoutMs: 5_000 })).body).toBe('up');
    await broker.disconnect();
    await expect(broker.request(t, 1, { timeoutMs: 1_000 })).rejects.toBeInstanceOf(ConnectionError);
  });

  it('a reply-to that arrives as a headers table entry (not the property) asks for no reply', async () => {
    const t = unique('rr-table');
    const responder = await open();
    const handled: string[] = [];
    await responder.subscribe<string>(t, (m) => {
      handled.push(m.body);
      expect(m.headers['reply-to']).toBeUndefined();
      return 'answer';
    });
    const channel = await raw();
    const { queue } = await channel.assertQueue('', { exclusive: true });
    const replies: ConsumeMessage[] = [];
    await channel.consume(queue, (m) => void (m && replies.push(m)), { noAck: true });
    channel.publish('ktransport', key(t), Buffer.from('"hello"'), { contentType: 'application/json', headers: { 'reply-to': queue } });
    await waitFor(
      () => handled.length === 1,
      5_000,
      () => 'not handled',
    );
    await sleep(200);
    expect(replies).toEqual([]);
  });

  it('a RemoteError for a failing responder; a mandatory request to a topic nobody serves is returned at once', async () => {
    const t = unique('rr-error');
    const responder = await open();
    await responder.subscribe(t, () => {
      throw new TypeError('bad input');
    });
    const requester = await open();
    const error = await outcome(requester.request(t, 1, { timeoutMs: 5_000 }));
    expect(error).toBeInstanceOf(RemoteError);
    expect(error).toMatchObject({ errorType: 'TypeError', remoteMessage: 'bad input' });
    const began = Date.now();
    const unroutable = await outcome(requester.request(unique(`rr-nobody-${randomUUID().slice(0, 4)}`), 1, { mandatory: true, timeoutMs: 5_000 }));
    expect(unroutable).toMatchObject({ code: 'UNROUTABLE' });
    expect(Date.now() - began).toBeLessThan(2_000);
  });
});
