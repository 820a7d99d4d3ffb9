import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import {
  type Broker,
  ConfigurationError,
  ConnectionError,
  type ConnectionState,
  DecodeError,
  DrainTimeoutError,
  type Handler,
  type Message,
  type ObservableConnection,
  PublishError,
  type RequestOptions,
  type Requester,
  type SubscribeOptions,
  type Subscription,
  type SubscriptionLoad,
  TimeoutError,
} from '@ktransport/broker';
import {
  assertPublishTopic,
  hasWildcard,
  headerText,
  loadedSubscription,
  MessagePipeline,
  type OutgoingMessage,
  RequestClient,
  type StopResult,
} from '@ktransport/broker/transport';
import { toPublishError, toSubscribeError } from './errors.js';
import { PAYLOAD_FIELD, toFields } from './headers.js';
import { Link } from './link.js';
import { type RedisBrokerOptions, type RedisPublishOptions, type RedisSubscribeOptions, resolveOptions, type ResolvedOptions } from './options.js';
import { StreamReader } from './reader.js';

type Schema = NonNullable<SubscribeOptions['schema']>;
type SchemaOutput<S extends Schema> = NonNullable<S['~standard']['types']>['output'];
type Phase = 'idle' | 'connecting' | 'open' | 'draining';

/** Marks a reply's publish: its topic is the request's `reply-to`, a stream key used as it is (no keyPrefix). */
const REPLY: unique symbol = Symbol('ktransport.redis.reply');
type SendOptions = RedisPublishOptions & { readonly [REPLY]?: true };

/** A requester's reply stream key after keyPrefix: `ktransport:reply:<uuid>`. */
const REPLY_STREAM_PREFIX = 'ktransport:reply:';
/** Shortest time to live of a reply stream, in seconds; longer when a request waits longer (its timeoutMs + 60 s). */
const REPLY_STREAM_TTL_S = 300;
/**
 * A ktransport requester's reply stream (any keyPrefix before it): made by its
 * requester, so a reply finds it gone only when the requester is (disconnected,
 * crashed and expired); the reply is then dropped (XADD NOMKSTREAM) rather
 * than left in a new stream that nobody reads or deletes.
 */
const KTRANSPORT_REPLY_KEY = /ktransport:reply:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** A reply's XADD trims the reply stream to about this many entries (MAXLEN ~): the bound of a stream nobody reads. */
const REPLY_STREAM_MAXLEN = 10_000;

/**
 * A Broker over Redis Streams (@redis/client). A topic is a stream key
 * (`keyPrefix` + topic); `publish` is XADD and resolves with Redis' answer.
 * A subscription with a `group` is a consumer of that consumer group
 * (XREADGROUP on a connection of its own, XACK after the handler, XAUTOCLAIM of
 * abandoned entries); one without reads new entries with XREAD. An entry
 * with a `reply-to` field is a request: its handler's return value is added
 * to the stream that field names. See the package README for the semantics.
 */
export class RedisBroker implements Broker, Requester, ObservableConnection {
  readonly system = 'redis';
  readonly #options: ResolvedOptions;
  readonly #pipeline: MessagePipeline;
  readonly #publish: (topic: string, body: unknown, options?: SendOptions) => Promise<void>;
  readonly #requests: RequestClient;
  /** This connection's reply stream once its reading is set up; deleted at disconnect. */
  #replyKey: string | undefined;
  /** The reply stream's time to live (seconds): REPLY_STREAM_TTL_S, or the longest request timeout + 60 s. */
  #replyTtl = REPLY_STREAM_TTL_S;
  /** When and with which time to live the reply stream's expiry was last set. */
  #expiry = { at: 0, ttl: 0 };
  readonly #readers = new Set<StreamReader>();
  readonly #listeners = new Set<(state: ConnectionState) => void>();
  /** Names this process' consumers: host, pid and a random part, then a counter per subscription. */
  readonly #instance = `${headerText(hostname(), 64).replace(/\s/g, '_')}-${process.pid}-${randomUUID().slice(0, 8)}`;
  #subscriptions = 0;
  #main: Link | undefined;
  #phase: Phase = 'idle';
  #state: ConnectionState = 'disconnected';
  #connecting: Promise<void> | undefined;

  constructor(options: RedisBrokerOptions = {}) {
    this.#options = resolveOptions(options);
    this.#pipeline = new MessagePipeline(this.system, options);
    this.#publish = this.#pipeline.publisher<SendOptions>((message) => this.#send(message));
    this.#requests = new RequestClient(
      {
        publish: (topic, body, publishOptions) => this.publish(topic, body, publishOptions),
        // The reply topic is the full stream key (keyPrefix included): it is what the `reply-to` field carries.
        subscribe: (key, handler, subscribeOptions) => this.#subscribe(key, key, handler, subscribeOptions, true),
      },
      {
        codecs: this.#pipeline.codecs,
        defaultCodec: this.#pipeline.defaultCodec,
        replyTopic: () => `${this.#options.keyPrefix}${REPLY_STREAM_PREFIX}${randomUUID()}`,
        // Replies are only handed to their waiting request: no reason to take them one at a time.
        subscribeOptions: { concurrency: 16 },
      },
    );
  }

  get state(): ConnectionState {
    return this.#state;
  }

  onStateChange(listener: (state: ConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /**
   * Connects; failures that may pass (Redis not reachable yet) are tried again
   * until `connectTimeoutMs` runs out, then it rejects with a ConnectionError.
   * Refused credentials (WRONGPASS, NOAUTH) reject at once with an
   * AuthenticationError, a certificate that does not verify with a
   * CertificateError; nothing keeps trying after that.
   */
  connect(): Promise<void> {
    if (this.#phase === 'open') return Promise.resolve();
    if (this.#phase === 'draining') return Promise.reject(new ConnectionError('redis broker is disconnecting'));
    this.#connecting ??= this.#open().finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  async #open(): Promise<void> {
    this.#phase = 'connecting';
    const main = new Link(this.#options, `ktransport-${this.#instance}`, (state) => this.#setState(state));
    try {
      await main.open();
    } catch (error) {
      this.#phase = 'idle';
      this.#setState('disconnected');
      throw error;
    }
    this.#main = main;
    this.#phase = 'open';
  }

  /**
   * Stops every subscription: reading stops, nothing queued starts (queued
   * entries of a group stay pending, for the group), running handlers may
   * finish within `drainTimeoutMs` and are acknowledged; then the connections
   * close. Rejects with DrainTimeoutError when handlers were still running at
   * the time limit (their entries are not acknowledged).
   */
  async disconnect(): Promise<void> {
    if (this.#connecting) await this.#connecting.catch(() => undefined);
    if (this.#phase !== 'open') return;
    this.#phase = 'draining';
    this.#requests.close(new ConnectionError(`disconnected from ${this.#options.displayUrl} before the reply arrived`));
    const readers = [...this.#readers];
    this.#readers.clear();
    const drainTimeoutMs = this.#pipeline.drainTimeoutMs;
    const results: StopResult[] = await Promise.all(
      readers.map(async (reader) => {
        await reader.stopReading();
        const result = await reader.engine.stop(drainTimeoutMs);
        await reader.settle(2_000);
        return result;
      }),
    );
    await this.#deleteReplies();
    await this.#main?.close(true);
    this.#main = undefined;
    this.#phase = 'idle';
    this.#setState('disconnected');
    let running = 0;
    let queued = 0;
    for (const result of results) {
      running += result.running;
      queued += result.queued;
    }
    if (running > 0) throw new DrainTimeoutError(running, drainTimeoutMs, queued);
  }

  /**
   * Encodes `body` and appends it to the stream `keyPrefix + topic` with XADD
   * (fields: `payload` with the codec's bytes, then one per header). Resolves
   * when Redis answered with the entry id; with `maxLen`, the same XADD trims
   * the stream to about that many entries. A header ktransport does not write
   * rejects with a non-retriable InvalidHeaderError before anything is sent; a
   * key of another type with a WrongTypeError; an error reply with a
   * PublishError (retriable for OOM, LOADING, ...); a publish while not
   * connected or reconnecting with a retriable ConnectionError; no answer within
   * `publishTimeoutMs` with a retriable TimeoutError.
   */
  publish<T = unknown>(topic: string, body: T, options?: RedisPublishOptions): Promise<void> {
    if (this.#phase !== 'open' && this.#phase !== 'draining') {
      return Promise.reject(new ConnectionError(`cannot publish to ${headerText(topic, 200)}: redis broker is not connected`));
    }
    try {
      assertPublishTopic(topic);
      const maxLen = options?.maxLen;
      if (maxLen !== undefined && (!Number.isInteger(maxLen) || maxLen < 0)) {
        throw new PublishError(topic, `maxLen must be a whole number >= 0, got ${maxLen}`);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#publish(topic, body, options);
  }

  /**
   * Publishes a request and resolves with its reply (see `Requester`), the
   * reply's body validated by `options.schema` and typed by its output.
   * Otherwise as the signature without a schema.
   */
  request<S extends Schema>(topic: string, body: unknown, options: RequestOptions<S> & RedisPublishOptions & { schema: S }): Promise<Message<SchemaOutput<S>>>;
  /**
   * Publishes a request to the stream `keyPrefix + topic` and resolves with
   * its reply, its body decoded by its content type. The entry carries the
   * fields `reply-to` (this connection's reply stream, the key
   * `keyPrefix + "ktransport:reply:<uuid>"`, made on the first request and read
   * with XREAD) and `correlation-id` (a random UUID); the reply is the entry a
   * responder adds to that stream with the same `correlation-id`. The reply
   * stream expires after `max(300 s, the longest timeoutMs + 60 s)` without
   * requests and is deleted by `disconnect()`. Rejects with a TimeoutError
   * when no reply came within `timeoutMs` (default 30,000), a RemoteError
   * when the responder failed, a ConnectionError when not connected or
   * disconnected meanwhile, and as `publish` when the request is not sent.
   */
  request<T = unknown>(topic: string, body: unknown, options?: RequestOptions & RedisPublishOptions): Promise<Message<T>>;
  request(topic: string, body: unknown, options?: RequestOptions & RedisPublishOptions): Promise<Message> {
    const timeoutMs = options?.timeoutMs;
    if (typeof timeoutMs === 'number' && Number.isFinite(timeoutMs) && timeoutMs > 0) {
      this.#replyTtl = Math.max(this.#replyTtl, Math.ceil(timeoutMs / 1_000) + 60);
    }
    return this.#refreshReplies().then(() => this.#requests.request(topic, body, options));
  }

  /**
   * Makes the reply stream, empty (an XADD trimmed to nothing at once: a
   * stream with no entries, only its last id), with its expiry; the
   * subscription then reads it from its start, so no reply is missed.
   */
  async #makeReplyStream(main: Link, key: string): Promise<void> {
    await main.client.sendCommand(['XADD', key, 'MAXLEN', '0', '*', 'ktransport', 'reply-stream']);
    await main.client.sendCommand(['EXPIRE', key, String(this.#replyTtl)]);
    this.#expiry = { at: Date.now(), ttl: this.#replyTtl };
  }

  /**
   * Keeps the reply stream alive while it is used: sets its expiry again when a
   * tenth of its time to live has passed since the last time, or a request
   * waits longer than it allows; makes it again (empty) when it expired
   * meanwhile. Failures are left to the request's own publish to report.
   */
  async #refreshReplies(): Promise<void> {
    const key = this.#replyKey;
    const main = this.#main;
    if (key === undefined || main === undefined || this.#phase !== 'open') return;
    const ttl = this.#replyTtl;
    if (ttl === this.#expiry.ttl && Date.now() - this.#expiry.at < ttl * 100) return;
    try {
      const set = await main.client.sendCommand<number>(['EXPIRE', key, String(ttl)]);
      if (set === 0 && this.#replyKey === key) await this.#makeReplyStream(main, key);
      else this.#expiry = { at: Date.now(), ttl };
    } catch {
      // not connected: the request's publish fails the same way, with a typed error
    }
  }

  /** Deletes this connection's reply stream (within 2 s; left to its expiry when Redis does not answer). */
  async #deleteReplies(): Promise<void> {
    const key = this.#replyKey;
    const main = this.#main;
    this.#replyKey = undefined;
    this.#expiry = { at: 0, ttl: 0 };
    if (key === undefined || main === undefined || !main.ready) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, 2_000)));
    await Promise.race([main.client.sendCommand(['DEL', key]).catch(() => undefined), late]);
    clearTimeout(timer);
  }

  /**
   * Consumes the stream `topic` with each body validated by `options.schema` and
   * typed by its output. A body that fails the schema is not retried: it goes to
   * `deadLetter`, or without one is delivered again and again. Otherwise as the
   * signature without a schema.
   */
  subscribe<S extends Schema>(
    topic: string,
    handler: Handler<SchemaOutput<S>>,
    options: RedisSubscribeOptions<S> & { schema: S },
  ): Promise<Subscription & SubscriptionLoad>;
  /**
   * Consumes the stream `keyPrefix + topic` (a name, no wildcards), each body
   * decoded by its content type. With `group`: joins the consumer group (made
   * with XGROUP CREATE ... MKSTREAM when missing, at `$` or, with
   * `fromBeginning`, at `0`) as a consumer of its own; each entry is
   * acknowledged (XACK) only after its handler succeeded or it was
   * dead-lettered. Without: reads entries added after this call (XREAD), with
   * nothing to acknowledge. Resolves once reading is set up: nothing added after
   * that is missed. An entry with a `reply-to` field is answered: the
   * handler's return value (or its failure) is added to the stream key that
   * field names, as it is, with the entry's `correlation-id`; a key that is
   * not a stream is reported to `onError` as a WrongTypeError. Rejects with
   * a ConfigurationError for a wildcard, a SubscribeError when Redis refuses
   * (WRONGTYPE: the key is not a stream), a ConnectionError when not
   * connected.
   */
  subscribe<T = unknown>(topic: string, handler: Handler<T>, options?: RedisSubscribeOptions): Promise<Subscription & SubscriptionLoad>;
  subscribe(topic: string, handler: Handler<never>, options: RedisSubscribeOptions = {}): Promise<Subscription & SubscriptionLoad> {
    return this.#subscribe(topic, this.#options.keyPrefix + topic, handler, options, false);
  }

  /** A subscription to the stream `key`; `replies`: the requester's reply stream, made here (empty, with its expiry), read from its start. */
  async #subscribe(
    topic: string,
    key: string,
    handler: Handler<never>,
    options: RedisSubscribeOptions,
    replies: boolean,
  ): Promise<Subscription & SubscriptionLoad> {
    const main = this.#main;
    if (this.#phase !== 'open' || !main) throw new ConnectionError(`cannot subscribe to ${headerText(topic, 200)}: redis broker is not connected`);
    if (typeof topic !== 'string' || topic.length === 0) throw new ConfigurationError('topic must be a non-empty string');
    if (hasWildcard(topic)) throw new ConfigurationError(`cannot subscribe to "${headerText(topic, 200)}": Redis stream keys have no wildcards (+, #)`);
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new ConfigurationError(`concurrency must be a whole number >= 1, got ${concurrency}`);
    const { group } = options;
    if (group !== undefined && (typeof group !== 'string' || group.length === 0)) throw new ConfigurationError('group must be a non-empty string');
    if (options.fromBeginning !== undefined && group === undefined) {
      throw new ConfigurationError('fromBeginning needs a group: a subscription without one reads what is added after subscribe()');
    }
    const deadLetter = MessagePipeline.deadLetterVia((t, body, o) => this.#publish(t, body, o));
    // Answers requests: the reply goes to the stream key the request's `reply-to` field names, as it is.
    const reply = replies ? undefined : MessagePipeline.deadLetterVia((t, body, o) => this.#publish(t, body, { ...o, [REPLY]: true }));
    const consumer = this.#pipeline.consumer(topic, handler, options, deadLetter, reply);
    const { schema: _schema, codec: _codec, ...plain } = options;
    const malformed = this.#pipeline.consumer(
      topic,
      () => {
        throw new DecodeError(`the stream entry on ${headerText(topic, 200)} has no "${PAYLOAD_FIELD}" field`);
      },
      { ...plain, codec: 'bytes' },
      deadLetter,
    );
    const reader = new Link(this.#options, `ktransport-${this.#instance}-reader`);
    const consumerName = `${this.#instance}-${++this.#subscriptions}`;
    const streamReader = new StreamReader({
      topic,
      key,
      group: group === undefined ? undefined : { name: group, consumer: consumerName, fromBeginning: options.fromBeginning ?? false },
      consumer,
      malformed,
      concurrency,
      options: this.#options,
      main,
      reader,
      log: this.#options.logger,
      replies,
    });
    try {
      if (replies) await this.#makeReplyStream(main, key);
      await reader.open();
      await streamReader.start();
    } catch (error) {
      await streamReader.stopReading();
      throw toSubscribeError(topic, error, this.#options.displayUrl, this.#options.redact);
    }
    this.#readers.add(streamReader);
    if (replies) this.#replyKey = key;
    const engine = streamReader.engine;
    const drainTimeoutMs = this.#pipeline.drainTimeoutMs;
    return loadedSubscription({
      topic,
      group,
      load: engine,
      // What was read is still handled (within drainTimeoutMs), as it was accepted for this subscription.
      unsubscribe: async () => {
        if (!this.#readers.delete(streamReader)) return;
        const { running, queued } = await streamReader.finish(drainTimeoutMs);
        if (running > 0) throw new DrainTimeoutError(running, drainTimeoutMs, queued);
      },
    });
  }

  #send(message: OutgoingMessage<SendOptions>): Promise<void> {
    const main = this.#main;
    const { topic } = message;
    const isReply = message.options[REPLY] === true;
    const key = isReply ? topic : this.#options.keyPrefix + topic;
    if (!main) return Promise.reject(new ConnectionError(`cannot publish to ${headerText(topic, 200)}: redis broker is not connected`));
    let args: (string | Buffer)[];
    try {
      const fields = toFields(topic, message.payload, message.headers, message.key);
      if (isReply) {
        const make = KTRANSPORT_REPLY_KEY.test(key) ? ['NOMKSTREAM'] : [];
        args = ['XADD', key, ...make, 'MAXLEN', '~', String(REPLY_STREAM_MAXLEN), '*', ...fields];
      } else {
        const maxLen = message.options.maxLen;
        args = maxLen === undefined ? ['XADD', key, '*', ...fields] : ['XADD', key, 'MAXLEN', '~', String(maxLen), '*', ...fields];
      }
    } catch (error) {
      return Promise.reject(error);
    }
    // @redis/client's command timeout ends once the command is written: the bound on Redis' answer is this timer.
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new TimeoutError(
            `publish to ${headerText(topic, 200)} was not confirmed within ${this.#options.publishTimeoutMs} ms (publishTimeoutMs); the entry may still have been written`,
          ),
        );
      }, this.#options.publishTimeoutMs);
      main.client.sendCommand(args).then(
        () => {
          clearTimeout(timer);
          resolve();
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(toPublishError(topic, key, error, this.#options.displayUrl, this.#options.redact));
        },
      );
    });
  }

  #setState(state: ConnectionState): void {
    if (state === this.#state) return;
    this.#state = state;
    // Redis may have lost the reply stream meanwhile (a restart without persistence, a failover): the next request
    // sets its expiry again, and makes it again when it is gone, before it is sent.
    if (state === 'reconnecting') this.#expiry = { at: 0, ttl: 0 };
    for (const listener of [...this.#listeners]) {
      try {
        listener(state);
      } catch {
        // a listener must not break the broker
      }
    }
  }
}
