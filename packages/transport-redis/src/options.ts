import type { ConnectionOptions } from 'node:tls';
import { type BasePublishOptions, type BaseSubscribeOptions, type CommonBrokerOptions, ConfigurationError, type SubscribeOptions } from '@ktransport/broker';
import { redactSecrets, redactUrl } from '@ktransport/broker/transport';

/**
 * Options of `RedisBroker`: where Redis is (`url`), how stream keys are named,
 * the time limits of connect and publish, reconnect backoff, and how a
 * subscription reads (intake bound, reclaim of abandoned entries), plus the
 * options every broker takes (codecs, telemetry, middleware, drain). Invalid
 * values throw a ConfigurationError in the constructor.
 */
export interface RedisBrokerOptions extends CommonBrokerOptions {
  /**
   * `redis://[[user]:password@]host[:port][/db]` or `rediss://...` (TLS with the
   * system's CAs). Default `redis://127.0.0.1:6379`. The password is masked in
   * every error and log line.
   */
  url?: string;
  /**
   * Node TLS options for a `rediss://` URL (ca, cert and key for mutual TLS,
   * servername, ...). Default: the system's CAs. A certificate that does not
   * verify rejects `connect()` with a CertificateError.
   */
  tls?: ConnectionOptions;
  /** Prepended to every topic to make its stream key (`orders` with `app:` is the key `app:orders`). Default none. */
  keyPrefix?: string;
  /**
   * How long `connect()` keeps trying to reach Redis (each attempt also bounded by
   * it) before it rejects with a ConnectionError. Refused credentials reject at
   * once with an AuthenticationError. Default 10,000 ms.
   */
  connectTimeoutMs?: number;
  /**
   * First wait before reconnecting after the connection was lost; it doubles
   * after every failed attempt, up to 5,000 ms. Subscriptions resume reading
   * once connected again. Default 200 ms.
   */
  reconnectDelayMs?: number;
  /**
   * Longest time a publish waits for Redis' answer to its XADD; then it rejects
   * with a retriable TimeoutError (the entry may still have been written).
   * Default 10,000 ms.
   */
  publishTimeoutMs?: number;
  /**
   * Entries a subscription holds waiting for a handler. Each read asks Redis for
   * at most the room left (XREAD/XREADGROUP `COUNT`), and nothing is read while
   * the queue is full. Default 1,000.
   */
  maxQueued?: number;
  /**
   * A group's entries that a member read but did not acknowledge for this long
   * (its process crashed, or it gave them back on shutdown) are claimed by
   * another member with XAUTOCLAIM and handled there. Entries a member still
   * holds are kept claimed by it (their idle time is reset while they wait or
   * run), so only abandoned entries move. Default 30,000 ms.
   */
  claimIdleMs?: number;
  /**
   * Receives what the transport cannot tell a caller: a subscription's reads
   * failing (an error reply such as WRONGTYPE; the read is tried again with a
   * backoff) and working again, acknowledgements Redis refused. Default: one
   * line on stderr per entry.
   */
  logger?: (entry: RedisLogEntry) => void;
  /** Wait before a message whose handler chain gave up (retries spent, not dead-lettered) is handled again in this process. Default 1,000 ms. */
  redeliveryDelayMs?: number;
}

/** A line of the transport's log. */
export interface RedisLogEntry {
  readonly level: 'error' | 'warn';
  /** Bounded text, with the password masked. */
  readonly message: string;
  /** The error behind it, if any. */
  readonly error?: unknown;
}

/** Options of `RedisBroker.publish`: the core ones (headers, key, codec) and stream trimming. */
export interface RedisPublishOptions extends BasePublishOptions {
  /** Trim the stream to about this many entries with this XADD (`MAXLEN ~ n`; Redis may keep a few more). Default: no trimming. */
  maxLen?: number;
}

type Schema = NonNullable<SubscribeOptions['schema']>;

/** Options of `RedisBroker.subscribe` and `RedisServer.subscribe`: the core ones and where a new group starts. */
export interface RedisSubscribeOptions<S extends Schema = Schema> extends BaseSubscribeOptions<S> {
  /**
   * With `group`: where a group that does not exist yet starts, the stream's first
   * entry (true, XGROUP CREATE id `0`) or entries added from now on (`$`). An
   * existing group keeps its position. Default false.
   */
  fromBeginning?: boolean;
}

// Redis' options are options of the core's transport-independent APIs too (`@Subscribe`,
// `BrokerServer.subscribe`, the `Broker` interface), typed and checked, once this package is imported.
declare module '@ktransport/broker' {
  interface TransportSubscribeOptions {
    // Redis (with a group): a new group starts at the stream's first entry (true) or at `$`. Declared by the Kafka
    // transport too, with the same type; its doc comment is the one shown (one comment per merged declaration).
    fromBeginning?: boolean;
  }
  interface TransportPublishOptions {
    /** Redis: trim the stream to about this many entries (`XADD ... MAXLEN ~ n`). */
    maxLen?: number;
  }
}

/** Options with defaults applied and checked. */
export interface ResolvedOptions {
  readonly url: string;
  /** The URL with its password masked, for messages. */
  readonly displayUrl: string;
  readonly keyPrefix: string;
  /** TLS options for rediss://, undefined for redis://. */
  readonly tls: ConnectionOptions | undefined;
  readonly connectTimeoutMs: number;
  readonly reconnectDelayMs: number;
  readonly publishTimeoutMs: number;
  readonly maxQueued: number;
  readonly claimIdleMs: number;
  readonly redeliveryDelayMs: number;
  readonly logger: (entry: RedisLogEntry) => void;
  /** Text from Redis or the client with the password masked. */
  readonly redact: (text: string) => string;
}

/** The longest wait between reconnect attempts. */
export const MAX_RECONNECT_DELAY_MS = 5_000;

export function resolveOptions(options: RedisBrokerOptions): ResolvedOptions {
  const url = options.url ?? 'redis://127.0.0.1:6379';
  if (typeof url !== 'string') throw new ConfigurationError('url must be a string');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigurationError(`url "${redactUrl(url).slice(0, 200)}" is not a URL; use redis://[user:password@]host[:port][/db] or rediss://...`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new ConfigurationError(`url: unsupported scheme "${parsed.protocol}" in ${redactUrl(url).slice(0, 200)}; use redis:// or rediss://`);
  }
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) throw new ConfigurationError(`url: the path must be a database number, got "/${db.slice(0, 50)}"`);
  if (options.tls !== undefined && (typeof options.tls !== 'object' || options.tls === null))
    throw new ConfigurationError('tls must be an object of Node TLS options');
  if (options.tls !== undefined && parsed.protocol !== 'rediss:') throw new ConfigurationError('the tls option needs a rediss:// url');
  const keyPrefix = options.keyPrefix ?? '';
  if (typeof keyPrefix !== 'string') throw new ConfigurationError('keyPrefix must be a string');
  const password = parsed.password ? decodeURIComponent(parsed.password) : undefined;
  const secrets = [password, parsed.password];
  return {
    url,
    displayUrl: redactUrl(url),
    keyPrefix,
    tls: parsed.protocol === 'rediss:' ? (options.tls ?? {}) : undefined,
    connectTimeoutMs: whole('connectTimeoutMs', options.connectTimeoutMs ?? 10_000, 1),
    reconnectDelayMs: whole('reconnectDelayMs', options.reconnectDelayMs ?? 200, 1),
    publishTimeoutMs: whole('publishTimeoutMs', options.publishTimeoutMs ?? 10_000, 1),
    maxQueued: whole('maxQueued', options.maxQueued ?? 1_000, 1),
    claimIdleMs: whole('claimIdleMs', options.claimIdleMs ?? 30_000, 100),
    redeliveryDelayMs: whole('redeliveryDelayMs', options.redeliveryDelayMs ?? 1_000, 0),
    logger: logger(options.logger),
    redact: (text) => redactSecrets(text, secrets),
  };
}

function logger(given: unknown): (entry: RedisLogEntry) => void {
  if (given === undefined) return (entry) => console.error(`ktransport redis: ${entry.message}`);
  if (typeof given !== 'function') throw new ConfigurationError('logger must be a function');
  const log = given as (entry: RedisLogEntry) => void;
  return (entry) => {
    try {
      log(entry);
    } catch {
      // a logger must not break the transport
    }
  };
}

function whole(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) throw new ConfigurationError(`${name} must be a whole number >= ${min}, got ${value}`);
  return value;
}
