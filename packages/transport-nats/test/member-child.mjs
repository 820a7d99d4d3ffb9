// A group member in a process of its own, killed by faults.test.ts: it takes messages and never finishes them.
// Plain JavaScript on the built package (dist), as a separate Node process cannot load the TypeScript sources.
import process from 'node:process';
import { NatsBroker } from '@ktransport/transport-nats';

const [url, topic, group] = process.argv.slice(2);
const broker = new NatsBroker({ url, tracing: false, metrics: false, ackWaitMs: 1_500, maxAckPending: 20 });
await broker.connect();
await broker.subscribe(
  topic,
  async (m) => {
    process.stdout.write(`got ${m.body.n}\n`);
    await new Promise(() => undefined);
  },
  { group, concurrency: 5 },
);
process.stdout.write('ready\n');
