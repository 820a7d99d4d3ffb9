import { conformanceCases } from '@ktransport/broker/testing';
import { RedisBroker } from '@ktransport/transport-redis';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { PrivateRedis } from './redis.js';

// A private instance with AOF persistence (appendfsync always), so that the restart case can stop and start it
// without Redis losing what it confirmed. Its streams go with it.
let redis: PrivateRedis;
beforeAll(async () => {
  redis = await PrivateRedis.start({ persistent: true });
});
afterAll(async () => {
  await redis?.destroy();
});

describe('RedisBroker conformance (Redis 7, streams)', () => {
  const cases = conformanceCases({
    // claimIdleMs 1,000: entries a drained member gave back go to the next member of the group within the case's wait.
    createBroker: () =>
      new RedisBroker({ url: redis.url, redeliveryDelayMs: 50, reconnectDelayMs: 100, claimIdleMs: 1_000, maxQueued: 50, tracing: false, metrics: false }),
    // wildcards: false — a topic is one stream key; + and # are refused at subscribe.
    // persistent: true — a group is kept by Redis with its position; entries added while no member reads wait for it.
    // orderingPerKey: true — one reader per subscription reads the stream in order and the engine keeps one key's
    //   messages one at a time (across the members of a group, and for reclaimed entries, there is no order).
    // drainFinishesQueue: false — a drain starts nothing queued; a group's entries stay pending and are claimed later.
    // intakeBound: 50 — maxQueued; each read asks for at most the room left.
    // requestReply: true — a reply stream of its own per connection, read with XREAD; replies XADDed to reply-to.
    features: {
      wildcards: false,
      groups: true,
      persistent: true,
      orderingPerKey: true,
      redelivery: true,
      drainFinishesQueue: false,
      intakeBound: 50,
      requestReply: true,
    },
    restartBroker: () => redis.restart(),
    waitMs: 10_000,
  });
  for (const c of cases) it(c.name, c.run, c.timeoutMs);
});
