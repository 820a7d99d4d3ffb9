import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, killSaverMidRun, runDemo } from './support.js';

// The same service over the queue transports: RabbitMQ, NATS JetStream and Redis Streams on this machine.
const BROKERS = [
  { name: 'amqp', url: 'amqp://guest:guest@127.0.0.1:5672' },
  { name: 'nats', url: 'nats://127.0.0.1:4222' },
  { name: 'redis', url: 'redis://127.0.0.1:6379' },
];

let db: Awaited<ReturnType<typeof freshDatabase>>;
beforeAll(async () => {
  db = await freshDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe.each(BROKERS)('saver-service over $name', ({ name, url }) => {
  it('stores every report posted over gRPC exactly once (npm run demo -- --broker)', async () => {
    const before = await db.count();
    const result = await runDemo(['--count', '400', '--broker', url, '--database', db.url]);
    expect(result.code, result.output).toBe(0);
    expect(result.summary).toMatch(new RegExp(`^demo: posted=400 stored=400 duplicates=\\d+ lost=0 transport=${name} db=postgres$`));
    expect(await db.count()).toBe(before + 400);
  });

  it('loses no report when the saver is killed with SIGKILL mid-run and restarted', async () => {
    await killSaverMidRun(url, db);
  }, 180_000);
});
