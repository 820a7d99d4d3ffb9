import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
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

/** Options of a private broker. */
export interface PrivateKafkaOptions {
  /** Start from an empty data directory (a broker that never ran: no `__consumer_offsets` yet), removed by `wipe()`. */
  fresh?: boolean;
}

/**
 * A broker of our own on other ports, for tests that stop and restart it. Files
 * that use one hold `lockPrivateKafka()` around it, so that two such brokers
 * never run at once on this small machine.
 */
export class PrivateKafka {
  readonly port: number;
  readonly saslPort: number;
  readonly #fresh: boolean;
  #env: Record<string, string>;
  #dataDir: string | undefined;

  constructor(port: number, options: PrivateKafkaOptions = {}) {
    this.port = port;
    this.saslPort = port + 1;
    this.#fresh = options.fresh ?? false;
    this.#env = { KAFKA_PORT: String(port), KAFKA_SASL_PORT: String(port + 1), KAFKA_CONTROLLER_PORT: String(port + 3) };
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /**
   * Starts it (scripts/kafka.sh waits until the port answers and the log says the
   * server started) and by default waits until it can coordinate consumer groups
   * (a fresh broker first creates `__consumer_offsets`). With `waitForGroups:
   * false` it returns as soon as the script does, as `scripts/kafka.sh start` does
   * for the shared broker, so that a test sees the broker as clients first do.
   */
  async start(options: { waitForGroups?: boolean } = {}): Promise<void> {
    await this.launch();
    if (options.waitForGroups === false) return;
    const admin = await connectAdmin(this.address);
    try {
      await until(async () => (await admin.describeGroups(['ktransport-warmup'])).groups.length === 1, `${this.address} coordinates groups`);
    } finally {
      await admin.disconnect();
    }
  }

  /**
   * Runs `scripts/kafka.sh start` and resolves when the script does (the port
   * answers, the log says the server started). Not awaited, it lets a test use
   * the broker while it boots, as a service started together with its Kafka does.
   */
  async launch(): Promise<void> {
    if (this.#fresh && !this.#dataDir) {
      this.#dataDir = await mkdtemp(join(tmpdir(), `kt-kafka-${this.port}-`));
      this.#env = { ...this.#env, KAFKA_DATA_DIR: this.#dataDir };
    }
    await run(['start'], this.#env);
  }

  async stop(): Promise<void> {
    await run(['stop'], this.#env);
  }

  async restart(): Promise<void> {
    await run(['restart'], this.#env);
  }

  /** Stops it and removes a fresh broker's data directory. */
  async wipe(): Promise<void> {
    await this.stop();
    if (this.#dataDir) await rm(this.#dataDir, { recursive: true, force: true });
    this.#dataDir = undefined;
  }
}

const LOCK = join(tmpdir(), 'ktransport-private-kafka.lock');

/**
 * Waits until no other test process runs a private broker, then holds the lock
 * (a directory, made atomically) until the returned function is called. A lock
 * left by a process that died is taken over. Bounded by `timeoutMs`.
 */
export async function lockPrivateKafka(timeoutMs = 400_000): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  const owner = `${process.pid}:${randomUUID()}`;
  for (;;) {
    try {
      await mkdir(LOCK);
      await writeFile(join(LOCK, 'owner'), owner);
      return async () => {
        if ((await readFile(join(LOCK, 'owner'), 'utf8').catch(() => '')) === owner) await rm(LOCK, { recursive: true, force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = await readFile(join(LOCK, 'owner'), 'utf8').catch(() => '');
    const pid = Number(holder.split(':')[0]);
    if (holder && !alive(pid)) await rm(LOCK, { recursive: true, force: true });
    if (Date.now() > deadline) throw new Error(`another test process held ${LOCK} (a private Kafka) for ${timeoutMs} ms: ${holder}`);
    await new Promise((resolvePromise) => setTimeout(resolvePromise, 500));
  }
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
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
    if (Date.now() > deadline) {
      const why = last ? `: ${last instanceof Error ? String(last) : inspect(last)}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}${why}`);
    }
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

/** `value`, or a failure naming `what` when it is missing. */
export function defined<T>(value: T | null | undefined, what: string): T {
  if (value === undefined || value === null) throw new Error(`expected ${what}, found none`);
  return value;
}
