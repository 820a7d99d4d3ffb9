import type { BasePublishOptions, BaseSubscribeOptions, SubscribeOptions } from '@ktransport/broker';
import { ConfigurationError } from '@ktransport/broker';
import { type CommonBrokerOptions, headerText, redactUrl } from '@ktransport/broker/transport';
import { wellFormed } from './headers.js';

/** TLS settings for an `amqps://` URL. */
export interface AmqpTlsOptions {
  /** CA certificate(s) that sign the broker's certificate. Default: Node's bundled roots. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Client certificate, for mutual TLS. */
  cert?: string | Buffer;
  /** Private key of the client certificate. */
  key?: string | Buffer;
  /** Refuse a broker whose certificate does not verify. Default true. */
  rejectUnauthorized?: boolean;
  /** Server name for SNI and the certificate's host name check. Default: the URL's host. */
  servername?: string;
}

/**
 * Options of `AmqpBroker`: where and how to connect (URL with credentials and
 * vhost, TLS), the topic exchange, reconnection, publish confirms, prefetch and
 * limits, plus the options every broker takes (codecs, telemetry, middleware,
 * drain). Every option has a default; invalid values throw a
 * ConfigurationError in the constructor.
 */
export interface AmqpBrokerOptions extends CommonBrokerOptions {
  /**
   * `amqp://` or `amqps://` URL of the broker, with user and password
   * (`amqp://user:password@host:5672/vhost`; the path is the vhost, `%2F` for
   * `/`). Default `amqp://guest:guest@127.0.0.1:5672`.
   */
  url?: string;
  /** TLS and mutual TLS; only with an `amqps://` URL. */
  tls?: AmqpTlsOptions;
  /**
   * The topic exchange every topic maps to: declared (durable) on every
   * connection; an existing `amq.` exchange is checked instead (the broker
   * reserves that prefix). Default `ktransport`.
   */
  exchange?: string;
  /**
   * AMQP heartbeat period asked for (the lower of this and the broker's is
   * used; 0 asks for none). A connection that carries nothing for about two
   * periods is taken as lost: `state` turns `reconnecting` and a new one is
   * opened. Default 60 (RabbitMQ's own default).
   */
  heartbeatSeconds?: number;
  /** Limit for the first connection, including the AMQP handshake. Default 10,000 ms. */
  connectTimeoutMs?: number;
  /** Wait between reconnection attempts after the connection was lost. Default 1,000 ms. */
  reconnectPeriodMs?: number;
  /**
   * Limit for the broker's publisher confirm of one publish; past it `publish`
   * rejects with a retriable PublishError (the message may still arrive).
   * Default 30,000 ms.
   */
  publishTimeoutMs?: number;
  /**
   * Unacknowledged messages the broker pushes to one subscription (AMQP
   * `basic.qos` per consumer) unless its subscribe options say otherwise; it
   * bounds what a subscription holds, running and queued. Default 100.
   */
  prefetch?: number;
  /**
   * Largest payload `publish` accepts; larger ones reject with a
   * PayloadTooLargeError before anything is sent. Default 134,217,728
   * (RabbitMQ's default `max_message_size`, 128 MiB); set it to your broker's.
   */
  maxMessageBytes?: number;
  /** Wait before a message whose handler failed (and was not dead-lettered) is handled again. Default 1,000 ms. */
  redeliveryDelayMs?: number;
}

/**
 * Options of `AmqpBroker.publish`: the core ones (headers, key, codec) and
 * AMQP's `mandatory` flag.
 */
export interface AmqpPublishOptions extends BasePublishOptions {
  /**
   * Ask the broker to return the message when no queue is bound for its
   * topic: `publish` then rejects with an UnroutableError instead of
   * resolving. Default false (a message nobody subscribed to is dropped by the
   * broker, as on the other transports).
   */
  mandatory?: boolean;
}

/** Any Standard Schema (the core does not re-export the spec's type, so it is derived here). */
export type Schema = NonNullable<SubscribeOptions['schema']>;
/** The output type of a Standard Schema. */
export type InferOutput<S extends Schema> = NonNullable<S['~standard']['types']>['output'];

/**
 * Options of `AmqpBroker.subscribe` and `AmqpServer.subscribe`: the core ones
 * (group, concurrency, schema, retry, dead letter, ...) and the prefetch of
 * this subscription's consumer.
 */
export interface AmqpSubscribeOptions<S extends Schema = Schema> extends BaseSubscribeOptions<S> {
  /** Unacknowledged messages the broker pushes to this subscription; at least `concurrency`. Default: the broker's `prefetch`. */
  prefetch?: number;
}

// AMQP's options are options of the core's transport-independent APIs too (`@Subscribe`,
// `BrokerServer.subscribe`, the `Broker` interface), typed and checked, once this package is imported.
declare module '@ktransport/broker' {
  interface TransportSubscribeOptions {
    /** AMQP: unacknowledged messages the broker pushes to this subscription. Default: the broker's `prefetch`. */
    prefetch?: number;
  }
  interface TransportPublishOptions {
    /** AMQP: reject with an UnroutableError when no queue is bound for the topic. Default false. */
    mandatory?: boolean;
  }
}

/** Every option with its default applied and checked. */
export interface ResolvedOptions {
  /** The URL to connect to; never put into text: see displayUrl. */
  readonly url: string;
  /** The URL with its password masked (`redactUrl`), for error messages. */
  readonly displayUrl: string;
  /** Passwords that must not appear in any error message. */
  readonly secrets: readonly string[];
  readonly tls: boolean;
  readonly exchange: string;
  readonly heartbeatSeconds: number;
  readonly connectTimeoutMs: number;
  readonly reconnectPeriodMs: number;
  readonly publishTimeoutMs: number;
  readonly prefetch: number;
  readonly maxMessageBytes: number;
  readonly redeliveryDelayMs: number;
}

/** RabbitMQ's default `max_message_size` (3.8 and later): 128 MiB, and the most it can be set to is 512 MiB. */
export const RABBITMQ_MAX_MESSAGE_SIZE = 134_217_728;
const MAX_MESSAGE_BYTES = 536_870_912;
/** The largest prefetch count AMQP can carry (a short). */
const MAX_PREFETCH = 65_535;
const MAX_TIMER = 2 ** 31 - 1;

/** Applies defaults and rejects bad values with a ConfigurationError, before anything connects. */
export function resolveOptions(options: AmqpBrokerOptions): ResolvedOptions {
  const url = options.url ?? 'amqp://guest:guest@127.0.0.1:5672';
  const displayUrl = redactUrl(url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not the cause: URL's error repeats the input, password included.
    throw new ConfigurationError(`invalid AMQP url "${displayUrl}"`);
  }
  if (parsed.protocol !== 'amqp:' && parsed.protocol !== 'amqps:') {
    throw new ConfigurationError(`unsupported AMQP url scheme "${parsed.protocol}" in "${displayUrl}"; use amqp:// or amqps://`);
  }
  const tls = parsed.protocol === 'amqps:';
  if (options.tls && !tls) throw new ConfigurationError(`tls options need an amqps:// url, got "${displayUrl}"`);
  const secrets = [parsed.password, safeDecode(parsed.password)].filter((s): s is string => !!s);
  const exchange = options.exchange ?? 'ktransport';
  if (typeof exchange !== 'string' || exchange.length === 0 || Buffer.byteLength(exchange) > 255 || !wellFormed(exchange)) {
    throw new ConfigurationError(
      `exchange must be a non-empty name of at most 255 UTF-8 bytes (the default exchange cannot route topics), got "${headerText(String(exchange), 300)}"`,
    );
  }
  const heartbeatSeconds = integer('heartbeatSeconds', options.heartbeatSeconds ?? 60, 0, 65_535);
  // The heartbeat goes to amqplib as a query parameter of the URL it connects to (this option wins over one in the URL).
  parsed.searchParams.set('heartbeat', String(heartbeatSeconds));
  return {
    url: parsed.toString(),
    displayUrl,
    secrets,
    tls,
    exchange,
    heartbeatSeconds,
    connectTimeoutMs: integer('connectTimeoutMs', options.connectTimeoutMs ?? 10_000, 1, MAX_TIMER),
    reconnectPeriodMs: integer('reconnectPeriodMs', options.reconnectPeriodMs ?? 1_000, 1, MAX_TIMER),
    publishTimeoutMs: integer('publishTimeoutMs', options.publishTimeoutMs ?? 30_000, 1, MAX_TIMER),
    prefetch: prefetch('prefetch', options.prefetch ?? 100),
    maxMessageBytes: integer('maxMessageBytes', options.maxMessageBytes ?? RABBITMQ_MAX_MESSAGE_SIZE, 0, MAX_MESSAGE_BYTES),
    redeliveryDelayMs: integer('redeliveryDelayMs', options.redeliveryDelayMs ?? 1_000, 0, MAX_TIMER),
  };
}

/** Checks a prefetch count (1-65,535). */
export function prefetch(name: string, value: number): number {
  return integer(name, value, 1, MAX_PREFETCH);
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function integer(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigurationError(`${name} must be a whole number from ${min} to ${max}, got ${value}`);
  }
  return value;
}
