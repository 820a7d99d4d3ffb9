import { conformanceCases } from '@ktransport/broker/testing';
import { AmqpBroker } from '@ktransport/transport-amqp';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { RabbitMq } from './rabbitmq.js';

// A private node: the restart case stops and starts it, and the durable group queues the
// cases make go with its data directory instead of staying on the machine's broker.
let rabbit: RabbitMq;
beforeAll(async () => {
  rabbit = await RabbitMq.start();
}, 120_000);
afterAll(async () => {
  await rabbit?.destroy();
}, 60_000);

/** The conformance brokers' prefetch: the most a subscription holds unacknowledged, so the most it queues. */
const PREFETCH = 50;

describe('AmqpBroker conformance (RabbitMQ 3.10)', () => {
  const cases = conformanceCases({
    createBroker: () => new AmqpBroker({ url: rabbit.url, prefetch: PREFETCH, redeliveryDelayMs: 50, reconnectPeriodMs: 200, tracing: false, metrics: false }),
    // wildcards: + and # become the binding key's * and #. groups: a group's durable queue, shared by its consumers.
    // persistent: that queue keeps messages while no member consumes. orderingPerKey: one queue per subscription
    // delivers in order, and the engine runs one message per key at a time. intakeBound: the broker pushes at most
    // `prefetch` unacknowledged messages to a subscription (basic.qos), and the engine holds no more than that.
    // drainFinishesQueue: false — a drain starts nothing queued and requeues it for the broker.
    features: {
      wildcards: true,
      groups: true,
      persistent: true,
      orderingPerKey: true,
      redelivery: true,
      drainFinishesQueue: false,
      intakeBound: PREFETCH,
      requestReply: true,
    },
    restartBroker: () => rabbit.restart(),
    waitMs: 10_000,
  });
  for (const c of cases) it(c.name, c.run, c.timeoutMs);
});
