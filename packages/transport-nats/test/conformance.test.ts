import { afterAll, beforeAll, describe, it } from 'vitest';
import { conformanceCases, sleep } from '@ktransport/broker/testing';
import { NatsBroker } from '@ktransport/transport-nats';
import { type Admin, admin, fast } from './helpers.js';
import { PrivateNats } from './servers.js';

/** A server of this file's own: the restart case stops and starts it (its store kept). */
const nats = new PrivateNats();
let setup: Admin | undefined;
/** max_ack_pending of the conformance brokers' consumers: the bound of what a subscription holds. */
const MAX_ACK_PENDING = 50;

beforeAll(async () => {
  await nats.start();
  setup = await admin(nats.url);
}, 30_000);

afterAll(async () => {
  await setup?.close().catch(() => undefined);
  await nats.remove();
}, 30_000);

/** Waits (at most about 10 s plus one request's timeout) until the admin connection is back and JetStream answers. */
async function adminReady(): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const ready = await setup?.jsm.getAccountInfo().then(
      () => true,
      () => false,
    );
    if (ready) return;
    await sleep(100);
  }
}

describe('NatsBroker conformance', () => {
  const cases = conformanceCases({
    createBroker: () => new NatsBroker({ url: nats.url, ...fast, ackWaitMs: 5_000, maxAckPending: MAX_ACK_PENDING }),
    // wildcards: + and # map to * and > (each test topic's stream captures `topic` and `topic.>`).
    // groups + persistent: a group is a durable consumer, which keeps its position while no member is subscribed.
    // orderingPerKey: a stream delivers in order and the engine runs one message per key at a time.
    // redelivery: a failed message runs again in process; one given back is `nak`ed for the server to redeliver.
    // intakeBound: the server delivers at most max_ack_pending unacknowledged messages to a consumer.
    // drainFinishesQueue is not declared: a drain gives what was not started back to the server.
    // requestReply: a request is a JetStream publish with a reply-to header naming a core-NATS inbox; replies are core publishes there.
    features: { wildcards: true, groups: true, persistent: true, orderingPerKey: true, redelivery: true, intakeBound: MAX_ACK_PENDING, requestReply: true },
    prepareTopic: async (topic) => {
      if (!setup) throw new Error('the admin connection is not open');
      await setup.stream(topic);
    },
    // The admin connection reconnects too: the cases after this one (request–reply) make their streams through it.
    restartBroker: async () => {
      await nats.restart();
      await adminReady();
    },
    waitMs: 20_000,
  });
  for (const c of cases) it(c.name, c.run, c.timeoutMs);
});
