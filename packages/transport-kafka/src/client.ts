import kafkajs, { type KafkaConfig, type LogEntry } from 'kafkajs';
import type { KafkaLogEntry, ResolvedOptions } from './options.js';

const { Kafka, logLevel } = kafkajs;

/** One kafkajs client per broker; producer, admin and every subscription's consumer come from it. */
export function createKafka(options: ResolvedOptions): InstanceType<typeof Kafka> {
  const config: KafkaConfig = {
    brokers: options.brokers,
    clientId: options.clientId,
    retry: options.retry,
    logLevel: options.logger ? logLevel.WARN : logLevel.NOTHING,
  };
  if (options.ssl !== undefined) config.ssl = options.ssl;
  if (options.sasl !== undefined) config.sasl = { ...options.sasl };
  const logger = options.logger;
  if (logger) {
    config.logCreator = () => (entry: LogEntry) => {
      // kafkajs warns that bounded retries weaken idempotence; the producer is replaced after any failed send instead.
      if (entry.log.message.startsWith('Limiting retries for the idempotent producer')) return;
      safeLog(logger, toEntry(entry));
    };
  }
  return new Kafka(config);
}

function toEntry({ namespace, level, log }: LogEntry): KafkaLogEntry {
  const fields: Record<string, unknown> = { ...log };
  for (const known of ['message', 'timestamp', 'logger']) delete fields[known];
  return { level: level === logLevel.ERROR ? 'error' : 'warn', namespace: namespace || 'kafkajs', message: String(log.message), fields };
}

/** Calls a user logger without letting it break the transport. */
export function safeLog(logger: ((entry: KafkaLogEntry) => void) | undefined, entry: KafkaLogEntry): void {
  if (!logger) return;
  try {
    logger(entry);
  } catch {
    // a throwing logger must not stop message flow
  }
}
