import { randomUUID } from 'node:crypto';
import type { ConnectionState } from '@ktransport/broker';
import { RedisBroker, type RedisBrokerOptions } from '@ktransport/transport-redis';
import { createClient, RESP_TYPES } from '@redis/client';
import { afterAll, afterEach } from 'vitest';
import { ensureRedis, SHARED_URL } from './redis.js';

export { sleep, waitFor } from '@ktransport/broker/testing';

const run = randomUUID().slice(0, 8);
let counter = 0;
const created = new Set<string>();

/** A topic (stream key) no other test uses; DELeted after the test file. */
export function topic(name: string): string {
  const t = `ktr-${run}-${++counter}-${name}`;
  created.add(t);
  return t;
}

const opened = new Set<RedisBroker>();

/** A connected broker (the machine's Redis unless `url` says otherwise), disconnected after the test. */
export async function open(options: RedisBrokerOptions = {}): Promise<RedisBroker> {
  await ensureRedis();
  const broker = new RedisBroker({ url: SHARED_URL, tracing: false, metrics: false, ...options });
  await broker.connect();
  opened.add(broker);
  return broker;
}

/** A raw @redis/client connection to the machine's Redis (bulk strings as Buffers), closed after the file. */
export async function raw(url = SHARED_URL): Promise<Raw> {
  await ensureRedis();
  const client = createClient({ url, commandOptions: { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } } });
  client.on('error', () => undefined);
  await client.connect();
  raws.add(client);
  return client;
}

/** What the tests use of a raw client. */
export interface Raw {
  sendCommand<T = unknown>(args: readonly (string | Buffer)[]): Promise<T>;
  close(): Promise<void>;
  destroy(): void;
}

const raws = new Set<Raw>();

afterEach(async () => {
  const brokers = [...opened];
  opened.clear();
  await Promise.all(brokers.map((b) => b.disconnect().catch(() => undefined)));
});

afterAll(async () => {
  if (created.size > 0) {
    const client = await raw();
    await client.sendCommand(['DEL', ...[...created].flatMap((t) => [t, `${t}-dlq`])]).catch(() => undefined);
  }
  for (const client of raws) client.destroy();
  raws.clear();
});

/** Resolves when `promise` settles: 'ok' or the error. */
export function outcome(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => 'ok',
    (error: unknown) => error,
  );
}

/** The broker's state now and every change after. */
export function states(broker: RedisBroker): ConnectionState[] {
  const seen: ConnectionState[] = [broker.state];
  broker.onStateChange((s) => void seen.push(s));
  return seen;
}

/** Polls an async `predicate` every 20 ms until it holds; fails naming `what` after `timeoutMs`. */
export async function eventually(predicate: () => Promise<boolean>, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
