// A group member in a process of its own (run by child.ts): it takes messages and never finishes
// handling them, printing "got <n>" for each, until the test kills it. Arguments: url topic group.
import { AmqpBroker } from '@ktransport/transport-amqp';

const [url, topic, group] = process.argv.slice(2);
if (!url || !topic || !group) throw new Error('usage: consumer-child <url> <topic> <group>');
const broker = new AmqpBroker({ url, tracing: false, metrics: false });
await broker.connect();
await broker.subscribe<{ n: number }>(
  topic,
  (m) => {
    process.stdout.write(`got ${m.body.n}\n`);
    // Never settles: the message stays unacknowledged while this process lives.
    return new Promise<void>(() => undefined);
  },
  { group, concurrency: 5, prefetch: 5 },
);
process.stdout.write('ready\n');
