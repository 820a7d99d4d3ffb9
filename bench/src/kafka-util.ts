import kafkajs, { type Consumer } from 'kafkajs';

const { Kafka, logLevel } = kafkajs;
export const PARTITIONS = 3;
/** ktransport's producer defaults, used by the raw kafkajs baseline too. */
export const BATCH_MESSAGES = 1_000;
/** ktransport's consumer fetch wait, used by the raw kafkajs baseline too. */
export const FETCH_WAIT_MS = 500;

export async function createTopic(brokers: string, topic: string): Promise<void> {
  const admin = new Kafka({ brokers: [brokers], clientId: 'bench-admin', logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
}

/** A record's JSON value; a record without one fails the run (the benchmark publishes none). */
export function jsonValue(value: Buffer | null): unknown {
  if (value === null) throw new Error('bench: a record without a value');
  return JSON.parse(value.toString());
}

/** Resolves once the kafkajs consumer joined its group (and so has its partitions). */
export function joined(consumer: Consumer): Promise<void> {
  return new Promise((resolve) => {
    const remove = consumer.on(consumer.events.GROUP_JOIN, () => {
      remove();
      resolve();
    });
  });
}
