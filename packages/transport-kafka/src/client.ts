import kafkajs, { type KafkaConfig, type LogEntry } from 'kafkajs';
import type { KafkaLogEntry, ResolvedOptions } from './options.js';

const { Kafka, logLevel } = kafkajs;

/** kafkajs settings of a client that differ from the broker's options (the health probe's). */
export interface ClientOverrides {
  readonly retry?: KafkaConfig['retry'];
  readonly connectionTimeout?: number;
  readonly requestTimeout?: number;
  /** Keep kafkajs' log lines out of the user's logger (a probe reports through `state` instead). */
  readonly silent?: boolean;
}

/** One kafkajs client per broker; producer, admin and every subscription's consumer come from it. */
export function createKafka(options: ResolvedOptions, overrides: ClientOverrides = {}): InstanceType<typeof Kafka> {
  const logger = overrides.silent ? undefined : options.logger;
  const config: KafkaConfig = {
    brokers: options.brokers,
    clientId: options.clientId,
    retry: overrides.retry ?? options.retry,
    logLevel: logger ? logLevel.WARN : logLevel.NOTHING,
  };
  if (overrides.connectionTimeout !== undefined) config.connectionTimeout = overrides.connectionTimeout;
  if (overrides.requestTimeout !== undefined) config.requestTimeout = overrides.requestTimeout;
  if (options.ssl !== undefined) config.ssl = options.ssl;
  if (options.sasl !== undefined) config.sasl = { ...options.sasl };
  if (logger) {
    config.logCreator = () => (entry: LogEntry) => {
      // kafkajs warns that bounded retries weaken idempotence; the producer is replaced after any failed send instead.
      if (entry.log.message.startsWith('Limiting retries for the idempotent producer')) return;
      safeLog(logger, toEntry(entry, options.redact));
    };
  }
  return new Kafka(config);
}

/** A kafkajs log line for the user's logger: the message and every text field with secrets masked. */
function toEntry({ namespace, level, log }: LogEntry, redact: (text: string) => string): KafkaLogEntry {
  const fields: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(log)) {
    if (name === 'message' || name === 'timestamp' || name === 'logger') continue;
    fields[name] = typeof value === 'string' ? redact(value) : value;
  }
  return { level: level === logLevel.ERROR ? 'error' : 'warn', namespace: namespace || 'kafkajs', message: redact(String(log.message)), fields };
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
