import type { ConnectionOptions } from 'node:tls';
import { type BasePublishOptions, type BaseSubscribeOptions, type CommonBrokerOptions, ConfigurationError, type SubscribeOptions } from '@ktransport/broker';
import { redactSecrets } from '@ktransport/broker/transport';

/** SASL mechanisms kafkajs speaks without plugins. */
export type KafkaSaslMechanism = 'plain' | 'scram-sha-256' | 'scram-sha-512';

/**
 * SASL credentials: a mechanism with a user name and password. A login the
 * brokers refuse rejects `connect()` with an AuthenticationError; the password
 * is masked in every error and log line.
 */
export type KafkaSaslOptions = {
  [M in KafkaSaslMechanism]: { mechanism: M; username: string; password: string };
}[KafkaSaslMechanism];

/** Exponential backoff kafkajs uses for connects, requests, joins and consumer restarts. */
export interface KafkaRetryOptions {
  /** Retries after the first attempt. Default 5. */
  retries?: number;
  /** First wait. Default 300 ms. */
  initialRetryTimeMs?: number;
  /** Longest wait. Default 30,000 ms. */
  maxRetryTimeMs?: number;
}

/** Codecs kafkajs has built in (snappy, lz4 and zstd would need global plugins). */
export type KafkaCompression = 'none' | 'gzip';

/** -1: all in-sync replicas; 1: the leader only; 0: no acknowledgement (fire-and-forget). */
export type KafkaAcks = -1 | 0 | 1;

/**
 * How `publish` writes: the acknowledgement it waits for, idempotence,
 * compression, how publishes share requests, and how long one may take. With
 * the defaults (acks -1, idempotent) a resolved publish is a record every
 * in-sync replica has, written once whatever the producer retried.
 */
export interface KafkaProducerOptions {
  /** Idempotent producer: no duplicates from producer retries, order kept per partition. Default true (needs acks -1). */
  idempotent?: boolean;
  /** Acknowledgement `publish` waits for. Default -1. */
  acks?: KafkaAcks;
  /** Compression of record batches. Default `none`. */
  compression?: KafkaCompression;
  /**
   * How long a publish waits for others to share its request. Default 0: publishes
   * issued together, or while a request to the same topic is in flight, still share one.
   */
  lingerMs?: number;
  /** Most messages in one request. Default 1,000. */
  maxBatchMessages?: number;
  /** Most payload bytes (values, keys, headers) in one request; a larger message goes alone. Default 900,000. */
  maxBatchBytes?: number;
  /**
   * Longest time a publish may take. A message still waiting to be sent when it
   * runs out is taken out of the queue (it is never sent) and its publish rejects
   * with a retriable PublishError; one whose request is already on its way rejects
   * with a retriable TimeoutError (it may still be written). Default 30,000 ms.
   */
  publishTimeoutMs?: number;
}

/**
 * Group membership timing of every subscription's consumer (session,
 * heartbeat, rebalance), the wait before a failed message is delivered again,
 * and how many fetched messages a subscription holds per partition.
 */
export interface KafkaConsumerOptions {
  /** The group coordinator drops a member it has not heard from for this long. Default 30,000 ms. */
  sessionTimeoutMs?: number;
  /** Heartbeat period; also how fast a member notices a rebalance. Default 3,000 ms. */
  heartbeatIntervalMs?: number;
  /**
   * How long the group coordinator waits for members to rejoin in a rebalance. A
   * ktransport member rejoins at once: running handlers do not hold it. Default 60,000 ms.
   */
  rebalanceTimeoutMs?: number;
  /**
   * Wait before a message the handler chain gave up on (retries spent, not
   * dead-lettered) is handled again, in this process; its partition waits with
   * it, the others go on. Default 1,000 ms.
   */
  redeliveryDelayMs?: number;
  /**
   * Fetched messages a subscription holds per partition waiting for a handler.
   * When a partition has this many, it is paused (nothing more is fetched for
   * it) until half of them were handled: memory stays bounded whatever the
   * backlog. Default 5,000.
   */
  maxQueuedPerPartition?: number;
}

/** A kafkajs or transport log line at warn or error level. */
export interface KafkaLogEntry {
  readonly level: 'error' | 'warn';
  /** kafkajs component (`Consumer`, `Connection`, ...) or `ktransport`. */
  readonly namespace: string;
  readonly message: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

/**
 * Options of `KafkaBroker`: the bootstrap servers (the one option without a
 * default), client id, TLS and SASL, kafkajs' retries, how long start keeps
 * trying, the health probe, producer and consumer settings, logging and topic
 * name mapping, plus the options every broker takes (codecs, telemetry,
 * middleware, drain). Invalid values throw a ConfigurationError in the
 * constructor.
 */
export interface KafkaBrokerOptions extends CommonBrokerOptions {
  /** Bootstrap servers: `host:port`, a list of them, or `kafka://host:port[,host:port]`. */
  brokers: string | readonly string[];
  /** Client id the brokers see (logs, quotas, group member ids). Default `ktransport`. */
  clientId?: string;
  /** TLS: `true` for system CAs, or Node TLS options (ca, cert, key, servername, ...). Default off. */
  ssl?: boolean | ConnectionOptions;
  /** SASL PLAIN or SCRAM credentials. Default none. */
  sasl?: KafkaSaslOptions;
  /** kafkajs' backoff for one operation (a request, a connect attempt); `startTimeoutMs` bounds connect and subscribe as a whole. */
  retry?: KafkaRetryOptions;
  /** Let metadata requests create missing topics (if the brokers allow it). Default true. */
  allowAutoTopicCreation?: boolean;
  /**
   * How long `connect()` and `subscribe()` (so `KafkaServer.start()`) keep retrying
   * failures that may pass: brokers not reachable yet, a group coordinator still
   * loading, a topic without a leader yet. When it runs out they reject with the
   * last error. Failures that retrying cannot fix (credentials, certificates,
   * options the brokers refuse) reject at once. Default 30,000 ms.
   */
  startTimeoutMs?: number;
  /**
   * Period of the health probe: a metadata request of its own (its own
   * connection, no retries, answered within twice the period, at least 2 s, at
   * most 10 s). A failed probe turns `state` to `reconnecting`; the first probe
   * that succeeds again restarts consumers that gave up at once and turns it back
   * to `connected`. 0 turns the probe off: then only failing publishes and
   * consumers change `state`. Default 1,000 ms.
   */
  healthCheckIntervalMs?: number;
  /** How `publish` writes: acks, idempotence, compression, batching, publish timeout. */
  producer?: KafkaProducerOptions;
  /** Group membership timing, the redelivery wait and the per-partition queue bound of every subscription. */
  consumer?: KafkaConsumerOptions;
  /** Receives warn and error lines from kafkajs and the transport. Default: nothing is logged. */
  logger?: (entry: KafkaLogEntry) => void;
  /**
   * Maps the topics of publish, subscribe, dead-letter and createTopics to Kafka topic
   * names, e.g. `(t) => t.replaceAll('/', '.')` for MQTT-style names. Handlers still
   * see the topic they subscribed to. Default: names are used as they are.
   */
  topicName?: (topic: string) => string;
}

/** Options of `KafkaBroker.publish`: the core ones (headers, key, codec) and the partition. */
export interface KafkaPublishOptions extends BasePublishOptions {
  /** Partition to write to, instead of the one the key (murmur2, as the Java client) or round robin picks. */
  partition?: number;
}

type Schema = NonNullable<SubscribeOptions['schema']>;

/** Options of `KafkaBroker.subscribe` and `KafkaServer.subscribe`: the core ones and where a new group starts. */
export interface KafkaSubscribeOptions<S extends Schema = Schema> extends BaseSubscribeOptions<S> {
  /** Where a group without committed offsets starts: the oldest message (true) or what is published from now on. Default false. */
  fromBeginning?: boolean;
}

// Kafka's options are options of the core's transport-independent APIs too (`@Subscribe`,
// `BrokerServer.subscribe`, the `Broker` interface), typed and checked, once this package is imported.
declare module '@ktransport/broker' {
  interface TransportSubscribeOptions {
    /** Kafka: where a group without committed offsets starts, the oldest message (true) or what is published from now on. Default false. */
    fromBeginning?: boolean;
  }
  interface TransportPublishOptions {
    /** Kafka: partition to write to, instead of the one the key (or round robin) picks. */
    partition?: number;
  }
}

/** Options with defaults applied and checked. */
export interface ResolvedOptions {
  readonly brokers: string[];
  readonly clientId: string;
  readonly ssl: boolean | ConnectionOptions | undefined;
  readonly sasl: KafkaSaslOptions | undefined;
  readonly retry: { retries: number; initialRetryTime: number; maxRetryTime: number };
  readonly allowAutoTopicCreation: boolean;
  readonly startTimeoutMs: number;
  readonly healthCheckIntervalMs: number;
  readonly producer: Required<KafkaProducerOptions>;
  readonly consumer: Required<KafkaConsumerOptions>;
  readonly logger: ((entry: KafkaLogEntry) => void) | undefined;
  readonly topicName: (topic: string) => string;
  /** Text from kafkajs or the brokers with the configured SASL password masked, for errors and log lines. */
  readonly redact: (text: string) => string;
}

const MECHANISMS: readonly string[] = ['plain', 'scram-sha-256', 'scram-sha-512'];

export function resolveOptions(options: KafkaBrokerOptions): ResolvedOptions {
  if (options === null || typeof options !== 'object') throw new ConfigurationError('KafkaBroker needs options with `brokers`');
  const clientId = options.clientId ?? 'ktransport';
  if (typeof clientId !== 'string' || clientId.length === 0) throw new ConfigurationError('clientId must be a non-empty string');
  const sasl = options.sasl;
  if (sasl !== undefined) {
    if (!MECHANISMS.includes(sasl.mechanism)) {
      throw new ConfigurationError(`sasl.mechanism must be one of ${MECHANISMS.join(', ')}, got ${String(sasl.mechanism)}`);
    }
    if (typeof sasl.username !== 'string' || typeof sasl.password !== 'string') throw new ConfigurationError('sasl needs a username and a password');
  }
  const retry = {
    retries: whole('retry.retries', options.retry?.retries ?? 5, 0),
    initialRetryTime: whole('retry.initialRetryTimeMs', options.retry?.initialRetryTimeMs ?? 300, 1),
    maxRetryTime: whole('retry.maxRetryTimeMs', options.retry?.maxRetryTimeMs ?? 30_000, 1),
  };
  const p = options.producer ?? {};
  const idempotent = p.idempotent ?? true;
  const acks = p.acks ?? -1;
  if (acks !== -1 && acks !== 0 && acks !== 1) throw new ConfigurationError(`producer.acks must be -1, 0 or 1, got ${String(acks)}`);
  if (idempotent && acks !== -1)
    throw new ConfigurationError(`producer.acks ${acks} needs producer.idempotent: false (an idempotent producer requires acks -1)`);
  if (idempotent && retry.retries < 1)
    throw new ConfigurationError('retry.retries 0 needs producer.idempotent: false (an idempotent producer must be allowed to retry)');
  const compression = p.compression ?? 'none';
  if (compression !== 'none' && compression !== 'gzip') {
    throw new ConfigurationError(`producer.compression must be 'none' or 'gzip', got ${String(compression)}`);
  }
  const c = options.consumer ?? {};
  const consumer = {
    sessionTimeoutMs: whole('consumer.sessionTimeoutMs', c.sessionTimeoutMs ?? 30_000, 1),
    heartbeatIntervalMs: whole('consumer.heartbeatIntervalMs', c.heartbeatIntervalMs ?? 3_000, 1),
    rebalanceTimeoutMs: whole('consumer.rebalanceTimeoutMs', c.rebalanceTimeoutMs ?? 60_000, 1),
    redeliveryDelayMs: whole('consumer.redeliveryDelayMs', c.redeliveryDelayMs ?? 1_000, 0),
    maxQueuedPerPartition: whole('consumer.maxQueuedPerPartition', c.maxQueuedPerPartition ?? 5_000, 1),
  };
  if (consumer.heartbeatIntervalMs >= consumer.sessionTimeoutMs) {
    throw new ConfigurationError(
      `consumer.heartbeatIntervalMs (${consumer.heartbeatIntervalMs}) must be below consumer.sessionTimeoutMs (${consumer.sessionTimeoutMs})`,
    );
  }
  if (options.logger !== undefined && typeof options.logger !== 'function') throw new ConfigurationError('logger must be a function');
  if (options.topicName !== undefined && typeof options.topicName !== 'function') throw new ConfigurationError('topicName must be a function');
  const secrets = [sasl?.password];
  return {
    brokers: parseBrokers(options.brokers),
    clientId,
    ssl: options.ssl,
    sasl,
    retry,
    allowAutoTopicCreation: options.allowAutoTopicCreation ?? true,
    startTimeoutMs: whole('startTimeoutMs', options.startTimeoutMs ?? 30_000, 1),
    healthCheckIntervalMs: whole('healthCheckIntervalMs', options.healthCheckIntervalMs ?? 1_000, 0),
    producer: {
      idempotent,
      acks,
      compression,
      lingerMs: whole('producer.lingerMs', p.lingerMs ?? 0, 0),
      maxBatchMessages: whole('producer.maxBatchMessages', p.maxBatchMessages ?? 1_000, 1),
      maxBatchBytes: whole('producer.maxBatchBytes', p.maxBatchBytes ?? 900_000, 1),
      publishTimeoutMs: whole('producer.publishTimeoutMs', p.publishTimeoutMs ?? 30_000, 1),
    },
    consumer,
    logger: options.logger,
    topicName: options.topicName ?? ((topic) => topic),
    redact: (text) => redactSecrets(text, secrets),
  };
}

/**
 * Accepts `host:port`, `[v6]:port`, comma-separated lists and `kafka://` URLs
 * (`kafka://h1:9092,h2:9092`), alone or in an array. Anything else is a
 * ConfigurationError, which quotes the entry with any credentials masked.
 */
export function parseBrokers(brokers: string | readonly string[]): string[] {
  const list = typeof brokers === 'string' ? [brokers] : brokers;
  if (!Array.isArray(list) || list.length === 0) throw new ConfigurationError('brokers must be a non-empty string or list of `host:port`');
  const out: string[] = [];
  for (const entry of list as readonly unknown[]) {
    if (typeof entry !== 'string') throw new ConfigurationError(`brokers: expected strings, got ${typeof entry}`);
    let rest = entry.trim();
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(rest);
    if (scheme) {
      if (scheme[1]?.toLowerCase() !== 'kafka') throw new ConfigurationError(`brokers: unsupported URL scheme in "${shown(entry)}"; use kafka://host:port`);
      rest = rest.slice(scheme[0].length).replace(/\/$/, '');
      if (rest.includes('@')) throw new ConfigurationError(`brokers: "${shown(entry)}" carries credentials; give them in the sasl option, not in the URL`);
    }
    for (const part of rest.split(',')) out.push(hostPort(part.trim(), entry));
  }
  return out;
}

function hostPort(value: string, entry: string): string {
  const match = /^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?):(\d{1,5})$/i.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port < 1 || port > 65_535) {
    throw new ConfigurationError(`brokers: "${shown(entry)}" is not host:port or kafka://host:port[,host:port]`);
  }
  return value;
}

/**
 * A brokers entry as an error message may quote it: everything from the start
 * (or from after `://`) to the last `@` is masked, so that user info with a
 * password never shows, whatever characters the password holds; bounded.
 */
function shown(entry: string): string {
  const at = entry.lastIndexOf('@');
  let masked = entry;
  if (at >= 0) {
    const scheme = entry.indexOf('://');
    const start = scheme >= 0 && scheme < at ? scheme + 3 : 0;
    masked = `${entry.slice(0, start)}***${entry.slice(at)}`;
  }
  return masked.length > 200 ? `${masked.slice(0, 200)}…` : masked;
}

function whole(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) throw new ConfigurationError(`${name} must be a whole number >= ${min}, got ${value}`);
  return value;
}

/** Kafka topic names: 1 to 249 of [a-zA-Z0-9._-], not `.` or `..`. */
export function isValidTopic(topic: string): boolean {
  return typeof topic === 'string' && /^[a-zA-Z0-9._-]{1,249}$/.test(topic) && topic !== '.' && topic !== '..';
}
