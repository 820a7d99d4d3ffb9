import { isIP } from 'node:net';
import type { BasePublishOptions, BaseSubscribeOptions, SubscribeOptions } from '@ktransport/broker';
import { ConfigurationError } from '@ktransport/broker';
import { type CommonBrokerOptions, redactUrl } from '@ktransport/broker/transport';

/**
 * A JetStream stream ktransport binds to or creates at `connect()`. An existing
 * stream is never changed: its configuration is the platform's.
 */
export interface NatsStreamOptions {
  /** Stream name (no whitespace, `.`, `*`, `>`, `/` or `\`). */
  name: string;
  /** NATS subjects the stream captures (NATS syntax: `orders.>`), used when ktransport creates it. */
  subjects: string[];
  /**
   * Create the stream when it does not exist (true, default), or only bind to it
   * (false): a missing stream then rejects `connect()` with a ConfigurationError.
   */
  create?: boolean;
  /** Storage of a created stream: `file` (default, as the server's default) or `memory`. */
  storage?: 'file' | 'memory';
  /** Replicas of a created stream (1-5; more than 1 needs a JetStream cluster). Default 1. */
  replicas?: number;
  /** Oldest message a created stream keeps, in milliseconds. Default 0: no age limit. */
  maxAgeMs?: number;
  /** Messages a created stream keeps (the oldest go first). Default -1: no limit. */
  maxMessages?: number;
  /** Bytes a created stream keeps (the oldest go first). Default -1: no limit. */
  maxBytes?: number;
}

/** TLS for `tls://` URLs. */
export interface NatsTlsOptions {
  /** CA certificate(s) (PEM) that sign the server's certificate. Default: Node's bundled roots. */
  ca?: string;
  /** Client certificate (PEM), for mutual TLS. */
  cert?: string;
  /** Private key (PEM) of the client certificate. */
  key?: string;
}

/**
 * Options of `NatsBroker`: where and how to connect, the streams to bind or
 * create, consumer settings, plus the options every broker takes (codecs,
 * telemetry, middleware, drain). Invalid values throw a ConfigurationError in
 * the constructor.
 */
export interface NatsBrokerOptions extends CommonBrokerOptions {
  /**
   * `nats://` or `tls://` URL of the server, with optional `user:password@` or
   * `token@`; several URLs separated by commas are tried in turn. Default `nats://127.0.0.1:4222`.
   */
  url?: string;
  /** User name (instead of the URL's). */
  username?: string;
  /** Password with `username` (instead of the URL's). */
  password?: string;
  /** Token authentication (instead of the URL's `token@`). */
  token?: string;
  /** TLS settings; the connection then requires TLS. */
  tls?: NatsTlsOptions;
  /** Limit of the first connection attempt to each server. Default 10,000 ms. */
  connectTimeoutMs?: number;
  /** Wait between reconnection attempts after the connection was lost. Default 1,000 ms. */
  reconnectWaitMs?: number;
  /** Streams to bind to or create at `connect()` (see NatsStreamOptions). Default none. */
  streams?: NatsStreamOptions[];
  /** Limit for a PubAck; a publish without one rejects with a retriable PublishError. Default 10,000 ms. */
  publishTimeoutMs?: number;
  /**
   * `ack_wait` of the consumers ktransport creates: a delivery not acknowledged
   * within it is delivered again. While a message is queued or its handler runs,
   * ktransport tells the server it is still working on it (`+WPI`) every third of
   * this, so a long handler does not cause a redelivery; a process that dies
   * stops doing so and its messages come back after this time. Default 30,000 ms.
   */
  ackWaitMs?: number;
  /**
   * `max_ack_pending` of the consumers ktransport creates: the most messages
   * delivered and not yet acknowledged, for the whole consumer (a group's
   * members share it). It bounds what a subscription holds. Default 1,000.
   */
  maxAckPending?: number;
  /** Wait before a message whose handler failed (and was not dead-lettered) is handled again. Default 1,000 ms. */
  redeliveryDelayMs?: number;
}

/** Where a new consumer starts: messages published after it was created (`new`, default) or the whole stream (`all`). */
export type NatsDeliverPolicy = 'new' | 'all';

/**
 * Options of `NatsBroker.publish`: the core ones (headers, key, codec) and the
 * JetStream message id for deduplication.
 */
export interface NatsPublishOptions extends BasePublishOptions {
  /**
   * JetStream message id (`Nats-Msg-Id` header): the stream stores a message with
   * an id it has seen within its duplicate window (2 minutes by default) only once.
   */
  msgId?: string;
}

/** Any Standard Schema (the core does not re-export the spec's type, so it is derived here). */
export type Schema = NonNullable<SubscribeOptions['schema']>;
/** The output type of a Standard Schema. */
export type InferOutput<S extends Schema> = NonNullable<S['~standard']['types']>['output'];

/**
 * Options of `NatsBroker.subscribe` and `NatsServer.subscribe`: the core ones
 * (group, concurrency, schema, retry, dead letter, ...) and where a new
 * consumer starts.
 */
export interface NatsSubscribeOptions<S extends Schema = Schema> extends BaseSubscribeOptions<S> {
  /** Where a consumer created by this subscription starts. Default `new`. An existing group's durable keeps its position. */
  deliverPolicy?: NatsDeliverPolicy;
}

declare module '@ktransport/broker' {
  interface TransportSubscribeOptions {
    /** NATS: where a new consumer starts, `new` (default) or `all`. */
    deliverPolicy?: NatsDeliverPolicy;
  }
  interface TransportPublishOptions {
    /** NATS: JetStream message id (`Nats-Msg-Id`) for deduplication. */
    msgId?: string;
  }
}

/** Every option with its default applied and checked. */
export interface ResolvedOptions {
  /** Server URLs for nats.js, credentials taken out. */
  readonly servers: string[];
  /** The URLs with passwords masked, for error messages. */
  readonly displayUrl: string;
  /** Secrets that must not appear in any error message. */
  readonly secrets: readonly string[];
  readonly user: string | undefined;
  readonly pass: string | undefined;
  readonly token: string | undefined;
  /** TLS options for nats.js (with `host` for a server named by IP address), when TLS is required. */
  readonly tls: (NatsTlsOptions & { host?: string }) | undefined;
  readonly connectTimeoutMs: number;
  readonly reconnectWaitMs: number;
  readonly publishTimeoutMs: number;
  readonly ackWaitMs: number;
  readonly maxAckPending: number;
  readonly redeliveryDelayMs: number;
  readonly streams: readonly Required<NatsStreamOptions>[];
}

const NAME = /^[^\s.*>/\\]+$/;

/** Applies defaults and rejects bad values with a ConfigurationError, before anything connects. */
export function resolveOptions(options: NatsBrokerOptions): ResolvedOptions {
  const url = options.url ?? 'nats://127.0.0.1:4222';
  const displayUrl = url
    .split(',')
    .map((one) => redactNatsUrl(one.trim()))
    .join(',');
  const servers: string[] = [];
  const secrets: string[] = [];
  let user = options.username;
  let pass = options.password;
  let token = options.token;
  let tlsRequired = options.tls !== undefined;
  for (const one of url.split(',').map((s) => s.trim())) {
    let parsed: URL;
    try {
      parsed = new URL(one);
    } catch {
      // Not the cause: URL's error repeats the input, password included.
      throw new ConfigurationError(`invalid NATS url "${redactNatsUrl(one)}"`);
    }
    if (parsed.protocol !== 'nats:' && parsed.protocol !== 'tls:') {
      throw new ConfigurationError(`unsupported NATS url scheme "${parsed.protocol}" in "${displayUrl}"; use nats:// or tls://`);
    }
    if (!parsed.hostname) throw new ConfigurationError(`NATS url "${redactNatsUrl(one)}" has no host`);
    if (parsed.protocol === 'tls:') tlsRequired = true;
    const name = safeDecode(parsed.username);
    const password = safeDecode(parsed.password);
    if (name && password) {
      user ??= name;
      pass ??= password;
    } else if (name) token ??= name;
    for (const secret of [parsed.password, password, name && !password ? name : '']) if (secret) secrets.push(secret);
    servers.push(`${parsed.hostname}:${parsed.port || '4222'}`);
  }
  for (const secret of [options.password, options.token]) if (secret) secrets.push(secret);
  // nats.js checks the certificate of a server named by an IP address against "localhost" (it sends no SNI
  // for IPs and gives tls.connect no host): the one IP host is passed on; several cannot be told apart.
  const ipHosts = new Set(servers.map((s) => s.slice(0, s.lastIndexOf(':'))).filter((h) => isIP(h.replace(/^\[|\]$/g, '')) !== 0));
  if (tlsRequired && ipHosts.size > 1) {
    throw new ConfigurationError(`TLS to several servers named by IP address (${[...ipHosts].join(', ')}) is not supported: name them by DNS names`);
  }
  const tlsHost = tlsRequired && ipHosts.size === 1 ? [...ipHosts][0]?.replace(/^\[|\]$/g, '') : undefined;
  if (pass !== undefined && user === undefined) throw new ConfigurationError('password needs a username');
  const streams = (options.streams ?? []).map((stream) => resolveStream(stream));
  return {
    servers,
    displayUrl,
    secrets,
    user,
    pass,
    token,
    tls: tlsRequired ? { ...options.tls, ...(tlsHost === undefined ? {} : { host: tlsHost }) } : undefined,
    connectTimeoutMs: integer('connectTimeoutMs', options.connectTimeoutMs ?? 10_000, 1),
    reconnectWaitMs: integer('reconnectWaitMs', options.reconnectWaitMs ?? 1_000, 0),
    publishTimeoutMs: integer('publishTimeoutMs', options.publishTimeoutMs ?? 10_000, 1),
    ackWaitMs: integer('ackWaitMs', options.ackWaitMs ?? 30_000, 300),
    maxAckPending: integer('maxAckPending', options.maxAckPending ?? 1_000, 1),
    redeliveryDelayMs: integer('redeliveryDelayMs', options.redeliveryDelayMs ?? 1_000, 0),
    streams,
  };
}

function resolveStream(stream: NatsStreamOptions): Required<NatsStreamOptions> {
  if (typeof stream.name !== 'string' || !NAME.test(stream.name)) {
    throw new ConfigurationError(`invalid stream name "${String(stream.name)}": no whitespace, ".", "*", ">", "/" or "\\"`);
  }
  const create = stream.create ?? true;
  if (create && (!Array.isArray(stream.subjects) || stream.subjects.length === 0 || stream.subjects.some((s) => typeof s !== 'string' || !s))) {
    throw new ConfigurationError(`stream ${stream.name}: subjects must be a non-empty list of NATS subjects`);
  }
  const storage = stream.storage ?? 'file';
  if (storage !== 'file' && storage !== 'memory') throw new ConfigurationError(`stream ${stream.name}: storage must be "file" or "memory"`);
  return {
    name: stream.name,
    subjects: stream.subjects ?? [],
    create,
    storage,
    replicas: integer(`stream ${stream.name}: replicas`, stream.replicas ?? 1, 1, 5),
    maxAgeMs: integer(`stream ${stream.name}: maxAgeMs`, stream.maxAgeMs ?? 0, 0),
    maxMessages: integer(`stream ${stream.name}: maxMessages`, stream.maxMessages ?? -1, -1),
    maxBytes: integer(`stream ${stream.name}: maxBytes`, stream.maxBytes ?? -1, -1),
  };
}

/** Checks a consumer deliver policy. */
export function deliverPolicy(value: unknown): NatsDeliverPolicy {
  if (value === undefined) return 'new';
  if (value !== 'new' && value !== 'all') throw new ConfigurationError(`deliverPolicy must be "new" or "all", got ${JSON.stringify(value)}`);
  return value;
}

/** Checks a group name: it becomes part of a durable consumer's name. */
export function groupName(group: string): string {
  if (typeof group !== 'string' || !NAME.test(group)) {
    throw new ConfigurationError(
      `invalid group "${String(group).slice(0, 200)}" for NATS: it names a durable consumer, so no whitespace, ".", "*", ">", "/" or "\\"`,
    );
  }
  return group;
}

/** A URL for messages: its password masked, and a user name without a password (a token) masked too. */
function redactNatsUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.username && !parsed.password) {
      parsed.username = '***';
      return parsed.toString();
    }
  } catch {
    // redactUrl masks what it can of text that is not a URL
  }
  return redactUrl(url);
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function integer(name: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigurationError(`${name} must be a whole number from ${min} to ${max}, got ${value}`);
  }
  return value;
}
