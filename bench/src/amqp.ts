import type { Message } from '@ktransport/broker';
import { AmqpBroker } from '@ktransport/transport-amqp';
import amqplib from 'amqplib';
import { type Body, bodyFactory, measure, Receiver, type WorkerConfig, type WorkerResult } from './common.js';

/** The machine's RabbitMQ unless BENCH_AMQP_URL says otherwise. */
const URL = process.env.BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
/** The exchange both implementations publish to (ktransport's default). */
const EXCHANGE = 'ktransport';
/** Unacknowledged messages the broker pushes to the consumer, the same for both. */
const PREFETCH = 1_000;
/** The content type ktransport's JSON codec labels messages with. */
const CONTENT_TYPE = 'application/json';

/** Topics of the bench carry no `/`; a `.` would be a routing key's level separator, which ktransport refuses. */
function topicOf(config: WorkerConfig): string {
  return config.topic.replaceAll('.', '-');
}

/**
 * RabbitMQ end to end through one AmqpBroker: publish with confirms (`window` in
 * flight), one subscription (exclusive queue, prefetch 1,000) whose handler counts.
 */
export async function ktransport(config: WorkerConfig): Promise<WorkerResult> {
  const topic = topicOf(config);
  const receiver = new Receiver();
  const broker = new AmqpBroker({ url: URL, exchange: EXCHANGE, prefetch: PREFETCH, tracing: false, metrics: false });
  await broker.connect();
  try {
    await broker.subscribe<Body>(topic, (message: Message<Body>) => void receiver.record(message.body), { concurrency: 64 });
    const body = bodyFactory(config.bytes);
    return await measure(config, receiver, (seq, done) => {
      broker.publish(topic, body(seq)).then(() => done(), done);
    });
  } finally {
    await broker.disconnect();
  }
}

/**
 * amqplib alone, the same work: JSON bodies published persistent with the content
 * type on a confirm channel (`window` in flight, each settled by its confirm) to
 * the same exchange and routing key; an exclusive queue bound to it, consumed
 * with prefetch 1,000 and a manual ack after each message is counted.
 */
export async function raw(config: WorkerConfig): Promise<WorkerResult> {
  const topic = topicOf(config);
  const receiver = new Receiver();
  const connection = await amqplib.connect(URL, { noDelay: true });
  try {
    const publisher = await connection.createConfirmChannel();
    await publisher.assertExchange(EXCHANGE, 'topic', { durable: true });
    const consumer = await connection.createChannel();
    await consumer.prefetch(PREFETCH, false);
    const { queue } = await consumer.assertQueue('', { exclusive: true });
    await consumer.bindQueue(queue, EXCHANGE, topic);
    await consumer.consume(queue, (message) => {
      if (!message) return;
      receiver.record(JSON.parse(message.content.toString('utf8')) as Body);
      consumer.ack(message);
    });
    const body = bodyFactory(config.bytes);
    return await measure(config, receiver, (seq, done) => {
      const content = Buffer.from(JSON.stringify(body(seq)));
      publisher.publish(
        EXCHANGE,
        topic,
        content,
        { persistent: true, contentType: CONTENT_TYPE, timestamp: Math.floor(Date.now() / 1000), headers: {} },
        (error: unknown) => done(error ?? undefined),
      );
    });
  } finally {
    await connection.close();
  }
}
