import { randomUUID } from 'node:crypto';
import type { ConnectionState } from '@ktransport/broker';
import { AmqpBroker, type AmqpBrokerOptions } from '@ktransport/transport-amqp';
import amqplib from 'amqplib';
import { afterEach } from 'vitest';

export { sleep, waitFor } from '@ktransport/broker/testing';

/** The machine's RabbitMQ (scripts/rabbitmq.sh ensure), or KTRANSPORT_AMQP_URL. */
export const SHARED_URL = process.env.KTRANSPORT_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

const run = randomUUID().slice(0, 8);
let counter = 0;

/** A topic (and group, exchange) name no other test or test file running in parallel uses. */
export function unique(name: string): string {
  return `kta-${run}-${++counter}-${name}`;
}

const opened = new Set<AmqpBroker>();
/** Durable queues and exchanges tests made on a shared broker: deleted after each test. */
const made: { url: string; queues: string[]; exchanges: string[] }[] = [];

/** A connected broker (the machine's RabbitMQ unless `url` says otherwise), disconnected after the test. */
export async function open(options: AmqpBrokerOptions = {}): Promise<AmqpBroker> {
  const broker = new AmqpBroker({ url: SHARED_URL, tracing: false, metrics: false, reconnectPeriodMs: 200, redeliveryDelayMs: 50, ...options });
  try {
    await broker.connect();
  } catch (error) {
    throw new Error(`cannot reach RabbitMQ at ${options.url ?? SHARED_URL} (start it with: bash scripts/rabbitmq.sh ensure): ${String(error)}`, {
      cause: error,
    });
  }
  opened.add(broker);
  return broker;
}

/** Deletes a group's durable queue (and an exchange) after the test. */
export function cleanUp(what: { queues?: string[]; exchanges?: string[] }, url = SHARED_URL): void {
  made.push({ url, queues: what.queues ?? [], exchanges: what.exchanges ?? [] });
}

afterEach(async () => {
  const brokers = [...opened];
  opened.clear();
  await Promise.all(brokers.map((b) => b.disconnect().catch(() => undefined)));
  for (const { url, queues, exchanges } of made.splice(0)) {
    const connection = await amqplib.connect(url);
    try {
      const channel = await connection.createChannel();
      for (const queue of queues) await channel.deleteQueue(queue);
      for (const exchange of exchanges) await channel.deleteExchange(exchange);
    } finally {
      await connection.close();
    }
  }
});

/** Resolves when `promise` settles: 'ok' or the error. */
export function outcome(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => 'ok',
    (error: unknown) => error,
  );
}

/** The broker's state now and every change after. */
export function states(broker: AmqpBroker): ConnectionState[] {
  const seen: ConnectionState[] = [broker.state];
  broker.onStateChange((s) => void seen.push(s));
  return seen;
}

/** `value`, or a failure naming `what` when it is missing. */
export function defined<T>(value: T | null | undefined, what: string): T {
  if (value === undefined || value === null) throw new Error(`expected ${what}, found none`);
  return value;
}
