import { describe, it } from 'vitest';
import { MemoryBroker } from '@ktransport/broker';
import { conformanceCases } from '@ktransport/broker/testing';

describe('MemoryBroker conformance', () => {
  const cases = conformanceCases({
    createBroker: () => new MemoryBroker({ redeliveryDelayMs: 5 }),
    features: { wildcards: true, groups: true, persistent: false, orderingPerKey: true, redelivery: true },
    waitMs: 5_000,
  });
  for (const c of cases) it(c.name, c.run, c.timeoutMs);
});
