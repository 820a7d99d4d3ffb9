import { ConfigurationError } from '@ktransport/broker';
import type { Admin } from 'kafkajs';
import { AdminError, describe, isConnectionFailure } from './errors.js';
import { isValidTopic } from './options.js';

/** A topic to create. */
export interface TopicSpec {
  topic: string;
  /** Default: the brokers' `num.partitions`. */
  partitions?: number;
  /** Default: the brokers' `default.replication.factor`. */
  replicationFactor?: number;
  /** Topic configs, e.g. `{ 'retention.ms': '86400000', 'max.message.bytes': '2000000' }`. */
  config?: Record<string, string>;
}

/** Optional ability: a broker that can create topics. */
export interface TopicAdmin {
  /** Creates the topics that do not exist yet (existing ones are left as they are) and waits for their leaders. */
  createTopics(topics: TopicSpec | readonly TopicSpec[]): Promise<void>;
}

export async function createTopics(admin: Admin, topics: TopicSpec | readonly TopicSpec[], redact: (text: string) => string): Promise<void> {
  const specs: readonly TopicSpec[] = Array.isArray(topics) ? topics : [topics as TopicSpec];
  for (const spec of specs) {
    if (!isValidTopic(spec.topic)) throw new ConfigurationError(`invalid Kafka topic name "${spec.topic}": use 1-249 of [a-zA-Z0-9._-]`);
    for (const [name, value] of [
      ['partitions', spec.partitions],
      ['replicationFactor', spec.replicationFactor],
    ] as const) {
      if (value !== undefined && (!Number.isInteger(value) || value < 1))
        throw new ConfigurationError(`${spec.topic}: ${name} must be a whole number >= 1, got ${value}`);
    }
  }
  try {
    await admin.createTopics({
      // kafkajs' own wait gives up when a KRaft broker does not know the new topic yet; waitForLeaders below does it right.
      waitForLeaders: false,
      topics: specs.map((spec) => ({
        topic: spec.topic,
        numPartitions: spec.partitions ?? -1,
        replicationFactor: spec.replicationFactor ?? -1,
        configEntries: Object.entries(spec.config ?? {}).map(([name, value]) => ({ name, value })),
      })),
    });
  } catch (error) {
    throw new AdminError(`cannot create ${specs.map((s) => s.topic).join(', ')}: ${describe(error, redact)}`, {
      cause: error,
      retriable: isConnectionFailure(error),
    });
  }
  await waitForLeaders(
    admin,
    specs.map((s) => s.topic),
    redact,
  );
}

/** Waits until the brokers serve metadata with a leader for every partition of the topics. */
async function waitForLeaders(admin: Admin, topics: string[], redact: (text: string) => string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let problem: unknown;
    try {
      const { topics: metadata } = await admin.fetchTopicMetadata({ topics });
      const ready = topics.every((name) => {
        const partitions = metadata.find((t) => t.name === name)?.partitions ?? [];
        return partitions.length > 0 && partitions.every((p) => p.leader >= 0);
      });
      if (ready) return;
    } catch (error) {
      problem = error;
    }
    if (Date.now() > deadline) {
      const detail = problem === undefined ? 'partitions have no leader' : describe(problem, redact);
      throw new AdminError(`created ${topics.join(', ')} but they are not ready after ${timeoutMs} ms: ${detail}`, { cause: problem, retriable: true });
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
