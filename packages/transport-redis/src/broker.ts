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
  type ObservableConnection,
  PublishError,
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

/**
 * A Broker over Redis Streams (@redis/client). A topic is a stream key
 * (`keyPrefix` + topic); `publish` is XADD and resolves with Redis' answer.
 * A subscription with a `group` is a consumer of that consumer group
 * (XREADGROUP on a connection of its own, XACK after the handler, XAUTOCLAIM of
 * abandoned entries); one without reads new entries with XREAD. See the
 * package README for the semantics.
 */
export class RedisBroker implements Broker, ObservableConnection {
  readonly system = 'redis';
  readonly #options: ResolvedOptions;
  readonly #pipeline: MessagePipeline;
  readonly #publish: (topic: string, body: unknown, options?: RedisPublishOptions) => Promise<void>;
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
    this.#publish = this.#pipeline.publisher<RedisPublishOptions>((message) => this.#send(message));
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
   * that is missed. Rejects with a ConfigurationError for a wildcard, a
   * SubscribeError when Redis refuses (WRONGTYPE: the key is not a stream), a
   * ConnectionError when not connected.
   */
  subscribe<T = unknown>(topic: string, handler: Handler<T>, options?: RedisSubscribeOptions): Promise<Subscription & SubscriptionLoad>;
  async subscribe(topic: string, handler: Handler<never>, options: RedisSubscribeOptions = {}): Promise<Subscription & SubscriptionLoad> {
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
    const consumer = this.#pipeline.consumer(topic, handler, options, deadLetter);
    const { schema: _schema, codec: _codec, ...plain } = options;
    const malformed = this.#pipeline.consumer(
      topic,
      () => {
        throw new DecodeError(`the stream entry on ${headerText(topic, 200)} has no "${PAYLOAD_FIELD}" field`);
      },
      { ...plain, codec: 'bytes' },
      deadLetter,
    );
    const key = this.#options.keyPrefix + topic;
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
    });
    try {
      await reader.open();
      await streamReader.start();
    } catch (error) {
      await streamReader.stopReading();
      throw toSubscribeError(topic, error, this.#options.displayUrl, this.#options.redact);
    }
    this.#readers.add(streamReader);
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

  #send(message: OutgoingMessage<RedisPublishOptions>): Promise<void> {
    const main = this.#main;
    const { topic } = message;
    const key = this.#options.keyPrefix + topic;
    if (!main) return Promise.reject(new ConnectionError(`cannot publish to ${headerText(topic, 200)}: redis broker is not connected`));
    let args: (string | Buffer)[];
    try {
      const fields = toFields(topic, message.payload, message.headers, message.key);
      const maxLen = message.options.maxLen;
      args = maxLen === undefined ? ['XADD', key, '*', ...fields] : ['XADD', key, 'MAXLEN', '~', String(maxLen), '*', ...fields];
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
    for (const listener of [...this.#listeners]) {
      try {
        listener(state);
      } catch {
        // a listener must not break the broker
      }
    }
  }
}
