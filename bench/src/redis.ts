import type { Message } from '@ktransport/broker';
import { RedisBroker } from '@ktransport/transport-redis';
import { createClient, RESP_TYPES } from '@redis/client';
import { type Body, bodyFactory, measure, Receiver, type WorkerConfig, type WorkerResult } from './common.js';

/** The machine's Redis unless BENCH_REDIS_URL says otherwise. */
const URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Entries one read asks for, the same for both (ktransport's maxQueued). */
const READ_COUNT = 1_000;
/** The content type ktransport's JSON codec labels entries with. */
const CONTENT_TYPE = 'application/json';
const GROUP = 'bench';

/** What the raw implementation uses of a @redis/client connection. */
interface Connection {
  sendCommand<T = unknown>(args: readonly (string | Buffer)[]): Promise<T>;
  connect(): Promise<unknown>;
  destroy(): void;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

function connection(): Connection {
  const client = createClient({ url: URL, commandOptions: { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer, [RESP_TYPES.MAP]: Map } } });
  const typed = client as unknown as Connection;
  typed.on('error', () => undefined);
  return typed;
}

/** Deletes the round's stream (and its group) with a connection of its own. */
async function cleanUp(key: string): Promise<void> {
  const client = connection();
  await client.connect();
  try {
    await client.sendCommand(['DEL', key]);
  } finally {
    client.destroy();
  }
}

/**
 * Redis Streams end to end through one RedisBroker: XADD publishes (`window` in
 * flight, each settled by Redis' answer), one group subscription (XREADGROUP on its
 * own connection, COUNT 1,000) whose handler counts, XACK after each message.
 */
export async function ktransport(config: WorkerConfig): Promise<WorkerResult> {
  const receiver = new Receiver();
  const broker = new RedisBroker({ url: URL, maxQueued: READ_COUNT, tracing: false, metrics: false });
  await broker.connect();
  try {
    await broker.subscribe<Body>(config.topic, (message: Message<Body>) => void receiver.record(message.body), { group: GROUP, concurrency: 64 });
    const body = bodyFactory(config.bytes);
    return await measure(config, receiver, (seq, done) => {
      broker.publish(config.topic, body(seq)).then(() => done(), done);
    });
  } finally {
    await broker.disconnect();
    await cleanUp(config.topic);
  }
}

/**
 * @redis/client alone, the same work: JSON bodies XADDed with the content type
 * (`window` in flight, each settled by Redis' answer); a consumer group read on a
 * second connection with XREADGROUP COUNT 1,000 BLOCK, each entry counted, then
 * XACKed (one XACK per read).
 */
export async function raw(config: WorkerConfig): Promise<WorkerResult> {
  const receiver = new Receiver();
  const key = config.topic;
  const publisher = connection();
  const reader = connection();
  await Promise.all([publisher.connect(), reader.connect()]);
  await publisher.sendCommand(['XGROUP', 'CREATE', key, GROUP, '$', 'MKSTREAM']);
  let reading = true;
  const loop = (async () => {
    while (reading) {
      const reply = await reader.sendCommand<Map<string, [Buffer, Buffer[]][]> | null>([
        'XREADGROUP',
        'GROUP',
        GROUP,
        'raw',
        'COUNT',
        String(READ_COUNT),
        'BLOCK',
        '100',
        'STREAMS',
        key,
        '>',
      ]);
      if (!reply) continue;
      for (const entries of reply.values()) {
        const ids: Buffer[] = [];
        for (const [id, fields] of entries) {
          const payload = fields[1];
          if (payload) receiver.record(JSON.parse(payload.toString('utf8')) as Body);
          ids.push(id);
        }
        if (ids.length > 0) void publisher.sendCommand(['XACK', key, GROUP, ...ids]);
      }
    }
  })();
  try {
    const body = bodyFactory(config.bytes);
    return await measure(config, receiver, (seq, done) => {
      publisher.sendCommand(['XADD', key, '*', 'payload', JSON.stringify(body(seq)), 'content-type', CONTENT_TYPE]).then(() => done(), done);
    });
  } finally {
    reading = false;
    await loop.catch(() => undefined);
    await publisher.sendCommand(['DEL', key]).catch(() => undefined);
    publisher.destroy();
    reader.destroy();
  }
}
