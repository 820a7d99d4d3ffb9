/* global process, console */
// A group member in a process of its own, for the SIGKILL test: it takes messages and never finishes them.
// It runs the built package (dist), as an application would.
import { RedisBroker } from '../dist/index.js';

const [url, topic, group] = process.argv.slice(2);
const broker = new RedisBroker({ url, tracing: false, metrics: false, claimIdleMs: 1_000 });
await broker.connect();
await broker.subscribe(
  topic,
  async (message) => {
    console.log(`got ${message.body.n}`);
    await new Promise(() => undefined);
  },
  { group, concurrency: 5 },
);
console.log('ready');
