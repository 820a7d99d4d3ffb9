import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KafkaBroker, type KafkaBrokerOptions } from '@ktransport/transport-kafka';
import kafkajs, { type Admin } from 'kafkajs';
import { afterAll, beforeAll } from 'vitest';

const { Kafka, logLevel } = kafkajs;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SCRIPT = join(ROOT, 'scripts/kafka.sh');

/** The shared test broker started by `scripts/kafka.sh start` (left running). */
export const KAFKA = '127.0.0.1:9092';
/** Its SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256/512). */
export const KAFKA_SASL = '127.0.0.1:9093';
export const SASL_USER = 'ktransport';
export const SASL_PASSWORD = 'ktransport-secret';

/** Timeouts tuned for tests: quick rejoin, quick redelivery, bounded retries. */
export const fast = {
  retry: { retries: 6, initialRetryTimeMs: 100, maxRetryTimeMs: 1_000 },
  consumer: { sessionTimeoutMs: 6_000, heartbeatIntervalMs: 250, rebalanceTimeoutMs: 3_000, redeliveryDelayMs: 100 },
  tracing: false,
  metrics: false,
} satisfies Partial<KafkaBrokerOptions>;

/** A name no other test (or test run) uses. */
export function unique(name: string): string {
  return `kt-${name}-${randomUUID().slice(0, 8)}`;
}

function run(args: string[], env: Record<string, string> = {}, timeoutMs = 150_000): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile('bash', [SCRIPT, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error) reject(new Error(`bash scripts/kafka.sh ${args.join(' ')} failed (${error.message.split('\n')[0]}):\n${stderr}${stdout}`));
      else resolvePromise(stdout + stderr);
    });
  });
}

/**
 * Makes sure the shared broker on 127.0.0.1:9092 runs (starting it with
 * scripts/kafka.sh if needed). A broker that cannot start fails the test
 * with the script's output; it is never skipped.
 */
export async function ensureKafka(): Promise<void> {
  await run(['start']);
}

/** A broker of our own on other ports, for tests that stop and restart it. */
export class PrivateKafka {
  readonly port: number;
  readonly saslPort: number;
  readonly #env: Record<string, string>;

  constructor(port: number) {
    this.port = port;
    this.saslPort = port + 1;
    this.#env = { KAFKA_PORT: String(port), KAFKA_SASL_PORT: String(port + 1), KAFKA_CONTROLLER_PORT: String(port + 3) };
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts it and waits until it can coordinate consumer groups (a fresh broker first creates __consumer_offsets). */
  async start(): Promise<void> {
    await run(['start'], this.#env);
    const admin = await connectAdmin(this.address);
    try {
      await until(async () => (await admin.describeGroups(['ktransport-warmup'])).groups.length === 1, `${this.address} coordinates groups`);
    } finally {
      await admin.disconnect();
    }
  }

  async stop(): Promise<void> {
    await run(['stop'], this.#env);
  }

  async restart(): Promise<void> {
    await run(['restart'], this.#env);
  }
}

/** A kafkajs admin client for checks the transport does not offer (committed offsets, metadata). */
export async function connectAdmin(broker = KAFKA): Promise<Admin> {
  const admin = new Kafka({ brokers: [broker], clientId: 'ktransport-test', logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  return admin;
}

export async function createTopic(admin: Admin, topic: string, partitions = 3, config: Record<string, string> = {}): Promise<string> {
  await admin.createTopics({
    waitForLeaders: false,
    topics: [{ topic, numPartitions: partitions, configEntries: Object.entries(config).map(([name, value]) => ({ name, value })) }],
  });
  await until(async () => {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    const found = topics[0]?.partitions ?? [];
    return found.length === partitions && found.every((p) => p.leader >= 0);
  }, `topic ${topic} has leaders`);
  return topic;
}

/** Polls an async condition (errors count as not yet) for at most `timeoutMs`. */
export async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await condition()) return;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A test file's view of the shared broker: an admin client, and brokers that are closed after the file. */
export interface SharedKafka {
  /** Connected before the file's tests run. */
  readonly admin: Admin;
  /** A connected KafkaBroker on the shared broker with the `fast` timeouts (consumer options merged over them). */
  connected(options?: Partial<KafkaBrokerOptions>): Promise<KafkaBroker>;
}

/**
 * Registers the hooks of a test file that uses the shared broker: makes sure it
 * runs and connects an admin client before the tests; afterwards disconnects
 * every broker `connected` opened, then the admin client.
 */
export function sharedKafka(): SharedKafka {
  let admin: Admin | undefined;
  const open: KafkaBroker[] = [];
  beforeAll(async () => {
    await ensureKafka();
    admin = await connectAdmin();
  }, 150_000);
  afterAll(async () => {
    await Promise.all(open.map((b) => b.disconnect().catch(() => undefined)));
    await admin?.disconnect();
  });
  return {
    get admin(): Admin {
      if (!admin) throw new Error('the admin client connects in beforeAll');
      return admin;
    },
    async connected(options = {}) {
      const broker = new KafkaBroker({ brokers: KAFKA, ...fast, ...options, consumer: { ...fast.consumer, ...options.consumer } });
      open.push(broker);
      await broker.connect();
      return broker;
    },
  };
}

/** Committed offset per partition of a group (-1: none). */
export async function committedOffsets(admin: Admin, groupId: string, topic: string): Promise<Map<number, number>> {
  const [result] = await admin.fetchOffsets({ groupId, topics: [topic] });
  return new Map((result?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
}

/** kcat is the foreign client of the interop tests; scripts/kafka.sh tools installs it (Debian package). */
export async function ensureKcat(): Promise<void> {
  await run(['tools']);
}
