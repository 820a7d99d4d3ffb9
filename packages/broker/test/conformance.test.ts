import { describe, it } from 'vitest';
import { MemoryBroker } from '@ktransport/broker';
import { conformanceCases } from '@ktransport/broker/testing';

describe('MemoryBroker conformance', () => {
  const cases = conformanceCases({
    createBroker: () => new MemoryBroker({ redeliveryDelayMs: 5, maxQueued: 50 }),
    // An in-process broker has nobody to hand queued messages back to: its drain handles them.
    features: {
      wildcards: true,
      groups: true,
      persistent: false,
      orderingPerKey: true,
      redelivery: true,
      drainFinishesQueue: true,
      intakeBound: 50,
      requestReply: true,
    },
    waitMs: 5_000,
  });
  for (const c of cases) it(c.name, c.run, c.timeoutMs);
});
