import { randomUUID } from 'node:crypto';
import {
  type Broker,
  ConfigurationError,
  ConnectionError,
  type ConnectionState,
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
} from '@ktransport/broker';
import {
  asBuffer,
  assertPublishTopic,
  hasWildcard,
  headerText,
  loadedSubscription,
  MessagePipeline,
  type OutgoingMessage,
  RequestClient,
} from '@ktransport/broker/transport';
import type { Admin, Message as KafkaRecord } from 'kafkajs';
import { createTopics, type TopicAdmin, type TopicSpec } from './admin.js';
import { createKafka, safeLog } from './client.js';
import { GroupSubscriber } from './consumer.js';
import { describe, isStartRetriable, toConnectionError, toSubscribeError, UnknownTopicError } from './errors.js';
import { recordSize } from './headers.js';
import {
  isValidTopic,
  type KafkaBrokerOptions,
  type KafkaPublishOptions,
  type KafkaSubscribeOptions,
  resolveOptions,
  type ResolvedOptions,
} from './options.js';
import { ClusterProbe } from './probe.js';
import { BatchingProducer } from './producer.js';

type Schema = NonNullable<SubscribeOptions['schema']>;
type SchemaOutput<S extends Schema> = NonNullable<S['~standard']['types']>['output'];

/** Prefix of the reply topics requesters create (a Kafka name: `ktransport.reply.<uuid>`). */
const REPLY_TOPIC_PREFIX = 'ktransport.reply.';

/** A publish option of the broker's own: the topic is a Kafka topic name as it is (a reply's `reply-to`), not passed through `topicName`. */
const KAFKA_NAME: unique symbol = Symbol('ktransport.kafka.name');

/**
 * How often a responder checks that the reply topics its producer wrote to still
 * exist: well within kafkajs' metadata refresh (metadataMaxAge, 5 minutes), which
 * fails for a topic deleted meanwhile.
 */
const REPLY_TARGETS_CHECK_MS = 60_000;

type SendOptions = KafkaPublishOptions & { readonly [KAFKA_NAME]?: true };

/**
 * A Broker over Apache Kafka (kafkajs). `publish` resolves once the brokers
 * acknowledged the record (acks -1, idempotent producer by default). Each
 * subscription is one consumer in its own consumer group (`group`, or a
 * generated one so that every such subscriber sees every message); offsets are
 * committed only after the handler succeeded and never past a failed message.
 */
export class KafkaBroker implements Broker, Requester, ObservableConnection, TopicAdmin {
  readonly system = 'kafka';
  readonly #options: ResolvedOptions;
  readonly #pipeline: MessagePipeline;
  readonly #kafka: ReturnType<typeof createKafka>;
  readonly #producer: BatchingProducer;
  readonly #publish: (topic: string, body: unknown, options?: SendOptions) => Promise<void>;
  readonly #requests: RequestClient;
  /** Reply topics this broker created since it connected: deleted at `disconnect()`. */
  readonly #replyTopics = new Set<string>();
  /**
   * Replies a responder sends, by a producer of their own that never creates a
   * topic (a reply topic is its requester's; one deleted stays deleted), opened at
   * the first reply. Ordinary publishes never share its kafkajs producer, which
   * asks for the metadata of every reply topic it wrote to.
   */
  readonly #replies: BatchingProducer;
  readonly #repliesHealth = {};
  #repliesOpen: Promise<void> | undefined;
  /** Reply topics the reply producer's current kafkajs producer wrote to, and when they were last seen to exist. */
  readonly #replyTargets = new Set<string>();
  #replyTargetsSeenAt = 0;
  readonly #subscribers = new Set<GroupSubscriber>();
  /** Parts that are failing (producer, consumers, the health probe): `state` is `reconnecting` while any is. */
  readonly #unhealthy = new Set<object>();
  readonly #producerHealth = {};
  readonly #probe: ClusterProbe | undefined;
  readonly #probeHealth = {};
  readonly #listeners = new Set<(state: ConnectionState) => void>();
  #admin: Admin | undefined;
  #state: ConnectionState = 'disconnected';
  #connecting: Promise<void> | undefined;
  /** The error of a connect attempt that was still running when startTimeoutMs ran out. */
  #budgetSpent: ConnectionError | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: KafkaBrokerOptions) {
    this.#options = resolveOptions(options);
    this.#pipeline = new MessagePipeline(this.system, options);
    this.#kafka = createKafka(this.#options);
    this.#producer = new BatchingProducer(this.#kafka, this.#options, (healthy) => this.#health(this.#producerHealth, healthy));
    this.#replies = new BatchingProducer(this.#kafka, { ...this.#options, allowAutoTopicCreation: false }, (healthy) =>
      this.#health(this.#repliesHealth, healthy),
    );
    if (this.#options.healthCheckIntervalMs > 0) this.#probe = new ClusterProbe(this.#options, (reachable) => this.#probed(reachable));
    this.#publish = this.#pipeline.publisher<SendOptions>((message) => this.#send(message));
    // Requests go out as any publish; the reply topic is a Kafka name of this connection's own, made and read by #subscribeReplies.
    this.#requests = new RequestClient(
      {
        publish: (topic, body, publishOptions) => this.publish(topic, body, publishOptions),
        subscribe: (topic, handler, o) => this.#subscribeReplies(topic, handler, o),
      },
      { codecs: this.#pipeline.codecs, defaultCodec: this.#pipeline.defaultCodec, replyTopic: () => `${REPLY_TOPIC_PREFIX}${randomUUID()}` },
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
   * Connects the producer and an admin client. Failures that may pass are
   * retried until `startTimeoutMs` runs out; rejects with ConnectionError,
   * AuthenticationError or CertificateError.
   */
  connect(): Promise<void> {
    if (this.#closing) return Promise.reject(new ConnectionError('Kafka broker is disconnecting'));
    if (this.#state === 'connected' || this.#state === 'reconnecting') return Promise.resolve();
    this.#connecting ??= this.#connect().finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  async #connect(): Promise<void> {
    this.#setState('connecting');
    const { startTimeoutMs, retry } = this.#options;
    const deadline = Date.now() + startTimeoutMs;
    let last: unknown;
    for (let attempt = 0; ; attempt++) {
      const admin = this.#kafka.admin({ retry });
      try {
        await this.#connectOnce(admin, deadline, last);
        this.#admin = admin;
        break;
      } catch (error) {
        last = error;
        await this.#producer.close().catch(() => undefined);
        await admin.disconnect().catch(() => undefined);
        const spent = Date.now() >= deadline;
        // disconnect() during connect(): no further attempt.
        if (spent || this.#closing || !isStartRetriable(error, true)) {
          this.#setState('disconnected');
          const mapped = toConnectionError(error, this.#options);
          if (!spent || !mapped.retriable || error === this.#budgetSpent) throw mapped;
          throw new ConnectionError(`${mapped.message} (still failing after ${startTimeoutMs} ms: startTimeoutMs)`, { cause: error });
        }
        const backoff = Math.min(retry.initialRetryTime * 2 ** attempt, retry.maxRetryTime, Math.max(0, deadline - Date.now()));
        await new Promise((resolve) => setTimeout(resolve, backoff));
      }
    }
    this.#unhealthy.clear();
    this.#setState('connected');
    this.#probe?.start();
  }

  /**
   * One attempt to connect the producer and `admin`, given up at `deadline` (with
   * the previous attempt's error, if any) and cleaned up when it settles.
   */
  async #connectOnce(admin: Admin, deadline: number, previous: unknown): Promise<void> {
    let late = false;
    const attempt = (async (): Promise<void> => {
      await this.#producer.connect();
      await admin.connect();
      if (late) await admin.disconnect();
    })();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => {
          late = true;
          // The previous attempt's error, as kafkajs gave it, says more than that time ran out.
          const reason: unknown =
            previous ??
            (this.#budgetSpent = new ConnectionError(
              `cannot connect to Kafka at ${this.#options.brokers.join(',')}: not connected within ${this.#options.startTimeoutMs} ms (startTimeoutMs)`,
            ));
          reject(reason);
        },
        Math.max(0, deadline - Date.now()),
      );
    });
    try {
      await Promise.race([attempt, timeout]);
    } finally {
      clearTimeout(timer);
      attempt.catch(() => undefined);
    }
  }

  /**
   * Stops every subscription (in-flight handlers finish within `drainTimeoutMs`,
   * their offsets are committed, the groups are left), flushes queued publishes
   * and closes the connections. Requests waiting for a reply reject with a
   * ConnectionError; the reply topic of `request()` is deleted (best effort).
   * Throws DrainTimeoutError if handlers were still running.
   */
  disconnect(): Promise<void> {
    if (this.#closing) return this.#closing;
    if (this.#state === 'disconnected' && !this.#connecting) return Promise.resolve();
    this.#closing = this.#disconnect().finally(() => (this.#closing = undefined));
    return this.#closing;
  }

  async #disconnect(): Promise<void> {
    this.#requests.close(new ConnectionError(`disconnected from Kafka at ${this.#options.brokers.join(',')} before the reply arrived`));
    await this.#connecting?.catch(() => undefined);
    await this.#probe?.stop();
    const drainTimeoutMs = this.#pipeline.drainTimeoutMs;
    const subscribers = [...this.#subscribers];
    this.#subscribers.clear();
    const results = await Promise.all(subscribers.map((s) => s.stop(drainTimeoutMs)));
    await this.#deleteReplyTopics();
    await this.#replies.close();
    this.#repliesOpen = undefined;
    this.#replyTargets.clear();
    await this.#producer.close();
    await this.#admin?.disconnect().catch(() => undefined);
    this.#admin = undefined;
    this.#unhealthy.clear();
    this.#setState('disconnected');
    const running = results.reduce((sum, r) => sum + r.running, 0);
    // Queued messages given back are no failure (the group delivers them again); handlers cut off are.
    if (running > 0)
      throw new DrainTimeoutError(
        running,
        drainTimeoutMs,
        results.reduce((sum, r) => sum + r.queued, 0),
      );
  }

  /**
   * Encodes `body` and writes it to `topic` (named through `topicName`), with
   * `options.key` as the record key. Resolves when the brokers acknowledged the
   * record (`producer.acks`); publishes issued together share one request.
   * Settles within `producer.publishTimeoutMs`: a record never sent rejects
   * with a retriable PublishError, one whose request may still be written with
   * a retriable TimeoutError. A record larger than the topic accepts, or for a
   * partition it does not have, rejects with a non-retriable PublishError; a
   * publish while not connected, with a ConnectionError.
   */
  publish<T = unknown>(topic: string, body: T, options?: KafkaPublishOptions): Promise<void> {
    if (!this.#usable()) return Promise.reject(new ConnectionError(`cannot publish to ${topic}: Kafka broker is not connected`));
    // The Kafka name is checked once, in #send, which every publish (dead letters too) goes through.
    try {
      assertPublishTopic(topic);
      const partition = options?.partition;
      if (partition !== undefined && (!Number.isInteger(partition) || partition < 0)) {
        throw new PublishError(topic, `partition must be a whole number >= 0, got ${partition}`);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#publish(topic, body, options);
  }

  /**
   * Consumes `topic` with each body validated by `options.schema` and typed by
   * its output. A body that fails the schema is not retried: it goes to
   * `deadLetter`, or without one holds its partition, delivered again and
   * again. Otherwise as the signature without a schema.
   */
  subscribe<S extends Schema>(
    topic: string,
    handler: Handler<SchemaOutput<S>>,
    options: KafkaSubscribeOptions<S> & { schema: S },
  ): Promise<Subscription & SubscriptionLoad>;
  /**
   * Consumes `topic` (a name, no wildcards) in the consumer group
   * `options.group`, each body decoded by its content type. Resolves once the
   * member joined its group and has its partitions: no message published after
   * that is skipped. Failures that may pass are retried within
   * `startTimeoutMs`; then it rejects with a SubscribeError (an
   * UnknownTopicError, AuthenticationError or CertificateError where that is the
   * cause), or at once with a ConfigurationError for a wildcard or a name Kafka
   * does not allow, a ConnectionError when not connected. The
   * offset after a message is committed only once its handler succeeded or it
   * was dead-lettered, never past a message that failed.
   */
  subscribe<T = unknown>(topic: string, handler: Handler<T>, options?: KafkaSubscribeOptions): Promise<Subscription & SubscriptionLoad>;
  async subscribe(topic: string, handler: Handler<never>, options: KafkaSubscribeOptions = {}): Promise<Subscription & SubscriptionLoad> {
    const admin = this.#admin;
    if (!this.#usable() || !admin || this.#closing) throw new ConnectionError(`cannot subscribe to ${topic}: Kafka broker is not connected`);
    if (typeof topic === 'string' && hasWildcard(topic)) throw new ConfigurationError(`cannot subscribe to "${topic}": Kafka topics have no wildcards`);
    const kafkaTopic = this.#kafkaTopic(topic, (message) => new ConfigurationError(message));
    // Its handlers answer requests: the reply goes to the `reply-to` Kafka topic as it is named there.
    const reply = MessagePipeline.deadLetterVia((t, body, o) => this.#publish(t, body, { ...o, [KAFKA_NAME]: true }));
    return this.#subscribe(admin, topic, kafkaTopic, handler, options, reply);
  }

  /** Starts a subscription to the Kafka topic `kafkaTopic` (`topic` as the application named it). */
  async #subscribe(
    admin: Admin,
    topic: string,
    kafkaTopic: string,
    handler: Handler<never>,
    options: KafkaSubscribeOptions,
    reply: ReturnType<typeof MessagePipeline.deadLetterVia> | undefined,
  ): Promise<Subscription & SubscriptionLoad> {
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new ConfigurationError(`concurrency must be a whole number >= 1, got ${concurrency}`);
    if (options.group !== undefined && (typeof options.group !== 'string' || options.group.length === 0)) {
      throw new ConfigurationError('group must be a non-empty string');
    }
    const groupId = options.group ?? `ktransport-${this.#options.clientId}-${randomUUID()}`;
    const consume = this.#pipeline.consumer(
      topic,
      handler,
      { ...options, group: groupId },
      MessagePipeline.deadLetterVia((t, body, o) => this.#publish(t, body, o)),
      reply,
    );
    const health = {};
    const subscriber = new GroupSubscriber({
      kafka: this.#kafka,
      admin,
      options: this.#options,
      topic: kafkaTopic,
      logicalTopic: topic,
      groupId,
      ephemeral: options.group === undefined,
      fromBeginning: options.fromBeginning ?? false,
      concurrency,
      consume,
      onHealth: (healthy) => this.#health(health, healthy),
      clusterReachable: () => this.#probe?.reachable ?? true,
    });
    this.#subscribers.add(subscriber);
    try {
      await subscriber.start();
    } catch (error) {
      this.#subscribers.delete(subscriber);
      await subscriber.stop(0);
      throw toSubscribeError(kafkaTopic, error, this.#options);
    }
    const drainTimeoutMs = this.#pipeline.drainTimeoutMs;
    return loadedSubscription({
      topic,
      group: groupId,
      load: subscriber,
      // Drains as disconnect does: what was fetched and not started stays uncommitted for the group.
      unsubscribe: async () => {
        if (!this.#subscribers.delete(subscriber)) return;
        const { running, queued } = await subscriber.stop(drainTimeoutMs);
        if (running > 0) throw new DrainTimeoutError(running, drainTimeoutMs, queued);
      },
    });
  }

  /**
   * Publishes a request and resolves with its reply (see `Requester`). The
   * request carries the headers `reply-to`, this broker's own reply topic
   * `ktransport.reply.<uuid>` (a Kafka name, created with one partition and
   * subscribed on the first request, new after every `connect()`, deleted at
   * `disconnect()`), and `correlation-id`, a random UUID; the reply comes back
   * there with the same `correlation-id`. Rejects with a TimeoutError when no
   * reply came within `timeoutMs`, a RemoteError when the responder failed, a
   * ConnectionError when the broker disconnects first, an AdminError when the
   * reply topic cannot be created.
   */
  request<S extends Schema>(topic: string, body: unknown, options: RequestOptions<S> & KafkaPublishOptions & { schema: S }): Promise<Message<SchemaOutput<S>>>;
  /** Publishes a request and resolves with its reply, its body decoded by its content type. */
  request<T = unknown>(topic: string, body: unknown, options?: RequestOptions & KafkaPublishOptions): Promise<Message<T>>;
  request(topic: string, body: unknown, options?: RequestOptions & KafkaPublishOptions): Promise<Message> {
    return this.#requests.request(topic, body, options);
  }

  /**
   * The requester's reply subscription: creates the Kafka topic `topic` (one
   * partition, through the admin client: auto-creation may be off) and reads it
   * from its beginning (it is new and empty) in a generated group, so that a
   * reply published before the group settled is read too.
   */
  async #subscribeReplies(topic: string, handler: Handler<Uint8Array>, options: SubscribeOptions): Promise<Subscription> {
    const admin = this.#admin;
    if (!this.#usable() || !admin || this.#closing) throw new ConnectionError(`cannot subscribe to the reply topic ${topic}: Kafka broker is not connected`);
    this.#replyTopics.add(topic);
    try {
      await createTopics(admin, { topic, partitions: 1 }, this.#options.redact);
    } catch (error) {
      // Not kept for disconnect(): the next request makes a topic of another name.
      this.#replyTopics.delete(topic);
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      throw error;
    }
    if (this.#closing || this.#admin !== admin) {
      // disconnect() began meanwhile and may have missed it.
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      throw new ConnectionError(`cannot subscribe to the reply topic ${topic}: Kafka broker disconnected`);
    }
    return this.#subscribe(admin, topic, topic, handler, { ...options, fromBeginning: true }, undefined);
  }

  /** Best effort: a topic left behind (the brokers away) is logged; it holds only replies. */
  async #deleteReplyTopics(): Promise<void> {
    const topics = [...this.#replyTopics];
    this.#replyTopics.clear();
    const admin = this.#admin;
    if (topics.length === 0 || !admin) return;
    try {
      await admin.deleteTopics({ topics, timeout: 5_000 });
    } catch (error) {
      safeLog(this.#options.logger, {
        level: 'warn',
        namespace: 'ktransport',
        message: this.#options.redact(`deleting the reply topics ${topics.join(', ')} failed: ${describe(error)}; delete them with kafka-topics.sh --delete`),
        fields: { topics },
      });
    }
  }

  /** Creates the topics that do not exist yet; rejects with AdminError (or ConfigurationError for bad specs). */
  async createTopics(topics: TopicSpec | readonly TopicSpec[]): Promise<void> {
    if (!this.#usable() || !this.#admin) throw new ConnectionError('cannot create topics: Kafka broker is not connected');
    const specs: readonly TopicSpec[] = Array.isArray(topics) ? topics : [topics as TopicSpec];
    await createTopics(
      this.#admin,
      specs.map((spec) => ({ ...spec, topic: this.#kafkaTopic(spec.topic, (m) => new ConfigurationError(m)) })),
      this.#options.redact,
    );
  }

  /** The Kafka topic for a topic of the API (through `topicName`), checked against Kafka's naming rules. */
  #kafkaTopic(topic: string, fail: (message: string) => Error): string {
    let name: unknown;
    try {
      name = this.#options.topicName(topic);
    } catch (error) {
      throw fail(`topicName failed for "${topic}": ${error instanceof Error ? error.message : String(error)}`);
    }
    if (typeof name !== 'string' || !isValidTopic(name)) {
      const mapped = name === topic ? '' : ` (mapped to "${String(name)}")`;
      throw fail(`"${topic}"${mapped} is not a valid Kafka topic name: use 1-249 of [a-zA-Z0-9._-], or map names with the topicName option`);
    }
    return name;
  }

  #send(message: OutgoingMessage<SendOptions>): Promise<void> {
    const { payload } = message;
    const reply = message.options[KAFKA_NAME] === true;
    let topic: string;
    try {
      topic = reply ? this.#replyTopic(message.topic) : this.#kafkaTopic(message.topic, (m) => new PublishError(message.topic, m));
    } catch (error) {
      return Promise.reject(error);
    }
    const record: KafkaRecord = {
      value: asBuffer(payload),
      // The pipeline made these headers for this message alone: kafkajs reads them as they are.
      headers: message.headers,
    };
    if (message.key !== undefined) record.key = message.key;
    if (message.options.partition !== undefined) record.partition = message.options.partition;
    const size = recordSize(payload, message.key, message.headers);
    return reply ? this.#sendReply(topic, record, size) : this.#producer.send(topic, record, size);
  }

  /**
   * Sends a reply by the reply producer. A reply topic it has not written to yet
   * is looked up first: one that does not exist (its requester disconnected)
   * rejects with an UnknownTopicError, and when one it wrote to was deleted
   * meanwhile, a fresh kafkajs producer takes over (kafkajs would ask for that
   * topic again in its metadata request, and fail); so too at most every
   * minute for the topics it wrote to (kafkajs refreshes its metadata every
   * five minutes). A reply that still meets a
   * deleted topic (deleted after the lookup, or found by kafkajs' periodic
   * metadata refresh) is sent once more by a fresh producer.
   */
  async #sendReply(topic: string, record: KafkaRecord, size: number): Promise<void> {
    const admin = this.#admin;
    if (!admin) throw new ConnectionError(`cannot reply to ${topic}: Kafka broker is not connected`);
    if (!this.#repliesOpen) {
      const opening = this.#replies.connect();
      this.#repliesOpen = opening;
      opening.catch(() => {
        if (this.#repliesOpen === opening) this.#repliesOpen = undefined;
      });
    }
    await this.#repliesOpen;
    if (!this.#replyTargets.has(topic) || Date.now() - this.#replyTargetsSeenAt > REPLY_TARGETS_CHECK_MS) {
      const existing = new Set(await admin.listTopics());
      this.#replyTargetsSeenAt = Date.now();
      if (!existing.has(topic)) {
        throw new UnknownTopicError(topic, `cannot reply to ${topic}: the topic does not exist (its requester disconnected?); the reply was dropped`, {
          retriable: false,
        });
      }
      if ([...this.#replyTargets].some((t) => !existing.has(t))) {
        this.#replies.renew();
        this.#replyTargets.clear();
      }
      this.#replyTargets.add(topic);
    }
    try {
      await this.#replies.send(topic, record, size);
    } catch (error) {
      if (!(error instanceof UnknownTopicError)) throw error;
      // The failed kafkajs producer was replaced: its successor has written to no topic yet.
      this.#replyTargets.clear();
      this.#replyTargets.add(topic);
      await this.#replies.send(topic, record, size);
    }
  }

  /** A reply's `reply-to`, a Kafka topic name as the requester wrote it: checked, not mapped. */
  #replyTopic(topic: string): string {
    if (!isValidTopic(topic)) {
      throw new PublishError(
        topic,
        `cannot reply to "${headerText(topic, 300)}": the reply-to header is not a Kafka topic name (1-249 of [a-zA-Z0-9._-]); the reply was not sent`,
      );
    }
    return topic;
  }

  #usable(): boolean {
    return this.#state === 'connected' || this.#state === 'reconnecting';
  }

  /**
   * The health probe's verdict. When the cluster answers again, the producer's
   * last failure no longer counts (its next publish connects a fresh producer)
   * and consumers that gave up start again at once.
   */
  #probed(reachable: boolean): void {
    if (reachable) {
      this.#unhealthy.delete(this.#producerHealth);
      for (const subscriber of this.#subscribers) subscriber.wake();
    }
    this.#health(this.#probeHealth, reachable);
  }

  #health(component: object, healthy: boolean): void {
    if (healthy) this.#unhealthy.delete(component);
    else this.#unhealthy.add(component);
    if (this.#usable() && !this.#closing) this.#setState(this.#unhealthy.size > 0 ? 'reconnecting' : 'connected');
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
