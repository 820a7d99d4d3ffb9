import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { isRetriable } from '@ktransport/broker';
import type { NatsBrokerOptions } from '@ktransport/transport-nats';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** The machine's server (scripts/nats.sh ensure). */
export const NATS_URL = 'nats://127.0.0.1:4222';

/** Quick settings for tests. */
export const fast = { tracing: false, metrics: false, redeliveryDelayMs: 100, connectTimeoutMs: 3_000, reconnectWaitMs: 200 } satisfies NatsBrokerOptions;

/** A name no other test (or test run) uses; valid as a topic level, a stream and a group name. */
export function unique(name: string): string {
  return `kt-${name}-${randomUUID().slice(0, 8)}`;
}

/**
 * Makes sure the machine's server answers with JetStream (starting or installing
 * it with scripts/nats.sh). A server that cannot start fails the test with the
 * script's output; it is never skipped.
 */
export function ensureNats(): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    execFile('bash', [join(ROOT, 'scripts/nats.sh'), 'ensure'], { timeout: 120_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`bash scripts/nats.sh ensure failed: ${error.message}\n${stderr}${stdout}`));
      else resolvePromise();
    });
  });
}

/** A raw nats.js connection and JetStream manager for setting up and inspecting streams. */
export interface Admin {
  readonly nc: NatsConnection;
  readonly jsm: JetStreamManager;
  /** Creates a stream capturing `subject` and `subject.>` (deleted by `close()`). */
  stream(subject: string, name?: string): Promise<string>;
  /** Deletes the streams made through it and closes the connection. */
  close(): Promise<void>;
}

export async function admin(url = NATS_URL): Promise<Admin> {
  const nc = await connect({ servers: url.replace(/^nats:\/\//, '') });
  const jsm = await jetstreamManager(nc);
  const made: string[] = [];
  return {
    nc,
    jsm,
    async stream(subject, name) {
      const streamName = name ?? `S-${subject.replace(/[^A-Za-z0-9_-]/g, '_')}`;
      // After a test restarted a private server, this connection may still be reconnecting, or JetStream
      // recovering its streams from disk (seconds on a loaded machine): a request that timed out is tried again.
      const deadline = Date.now() + 30_000;
      for (;;) {
        const error = await jsm.streams.add({ name: streamName, subjects: [subject, `${subject}.>`] }).then(
          () => undefined,
          (e: unknown) => e,
        );
        if (error === undefined) break;
        if (!(error instanceof Error)) throw new Error('creating the stream failed', { cause: error });
        if (error.name !== 'TimeoutError' || Date.now() > deadline) throw error;
      }
      made.push(streamName);
      return streamName;
    },
    async close() {
      for (const name of made) await jsm.streams.delete(name).catch(() => undefined);
      await nc.close();
    },
  };
}

/** Publishes, repeating while the publish fails with a retriable error (at most `attempts` times, 100 ms apart). */
export async function publishRetrying(publish: () => Promise<void>, attempts = 100): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const error = await publish().then(
      () => undefined,
      (e: unknown) => e,
    );
    if (error === undefined) return;
    if (!isRetriable(error) || attempt >= attempts) throw error instanceof Error ? error : new Error('publish failed');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Polls an asynchronous `predicate` until it holds; throws with `describe()` after `timeoutMs`. */
export async function waitForAsync(predicate: () => Promise<boolean>, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
