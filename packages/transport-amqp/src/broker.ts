import { randomUUID } from 'node:crypto';
import type { Broker, ConnectionState, Handler, Message, ObservableConnection, RequestOptions, Requester, Subscription } from '@ktransport/broker';
import { BrokerError, ConfigurationError, ConnectionError, DrainTimeoutError, SubscribeError } from '@ktransport/broker';
import {
  DeliveryEngine,
  headerText,
  loadedSubscription,
  MessagePipeline,
  redactSecrets,
  RequestClient,
  type RequestWire,
  type StopResult,
} from '@ktransport/broker/transport';
import amqplib, { type ChannelModel, type SocketOptions } from 'amqplib';
import { bounded, Consumer } from './consumer.js';
import { connectFailure, replyCode } from './errors.js';
import { bindingKey, groupQueue, replyQueue, routingKey } from './headers.js';
import type { AmqpBrokerOptions, AmqpPublishOptions, AmqpSubscribeOptions, InferOutput, ResolvedOptions, Schema } from './options.js';
import { prefetch, resolveOptions } from './options.js';
import { Publisher, type SendOptions, TO_QUEUE } from './publisher.js';

/** Prefix of a requester's reply queue: `ktransport.reply.<uuid>`. */
const REPLY_QUEUE_PREFIX = 'ktransport.reply.';

type Phase = 'idle' | 'connecting' | 'open' | 'draining' | 'closing';

/**
 * A Broker over AMQP 0.9.1 (RabbitMQ, amqplib): the AMQP wire on the core
 * delivery engine. Topics are routing keys on one topic exchange; each
 * `subscribe()` call consumes a queue of its own (a group's durable queue,
 * shared with the group's other members, or an exclusive one) on a channel of
 * its own, with its own DeliveryEngine (queue, concurrency, per-key order,
 * redelivery, drain); a message is acknowledged only once handled. Publishes
 * go through publisher confirms. See the package README for the semantics.
 */
export class AmqpBroker implements Broker, Requester, ObservableConnection {
  /** `messaging.system` of spans and metrics: OpenTelemetry's value for RabbitMQ. */
  readonly system = 'rabbitmq';
  readonly #options: ResolvedOptions;
  readonly #socketOptions: SocketOptions;
  readonly #pipeline: MessagePipeline;
  readonly #publisher: Publisher;
  readonly #publish: (topic: string, body: unknown, options?: SendOptions) => Promise<void>;
  /** Replies to requests: to the queue named by `reply-to`, through the default exchange. */
  readonly #reply = MessagePipeline.deadLetterVia((queue, body, options) => this.#publish(queue, body, { ...options, [TO_QUEUE]: true }));
  readonly #requests: RequestClient;
  /** Every subscription whose engine may still hold deliveries. */
  readonly #consumers = new Set<Consumer>();
  readonly #listeners = new Set<(state: ConnectionState) => void>();
  #state: ConnectionState = 'disconnected';
  #phase: Phase = 'idle';
  #model: ChannelModel | undefined;
  #connecting: Promise<void> | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;

  constructor(options: AmqpBrokerOptions = {}) {
    this.#options = resolveOptions(options);
    this.#pipeline = new MessagePipeline(this.system, options);
    this.#publisher = new Publisher(this.#options);
    this.#publish = this.#pipeline.publisher<SendOptions>((message) => this.#publisher.send(message));
    // The requester publishes on the exchange as any publish, and takes replies from a queue of its own (not bound).
    const wire: RequestWire = {
      publish: (topic, body, options) => this.publish(topic, body, options),
      subscribe: (queue, handler) => this.#subscribeReplies(queue, handler),
    };
    this.#requests = new RequestClient(wire, {
      codecs: this.#pipeline.codecs,
      defaultCodec: this.#pipeline.defaultCodec,
      replyTopic: () => REPLY_QUEUE_PREFIX + randomUUID(),
    });
    const socket: SocketOptions = { timeout: this.#options.connectTimeoutMs, noDelay: true, clientProperties: { connection_name: 'ktransport' } };
    const tls = options.tls;
    if (tls) {
      if (tls.ca !== undefined) socket.ca = tls.ca;
      if (tls.cert !== undefined) socket.cert = tls.cert;
      if (tls.key !== undefined) socket.key = tls.key;
      if (tls.servername !== undefined) socket.servername = tls.servername;
      socket.rejectUnauthorized = tls.rejectUnauthorized ?? true;
    }
    this.#socketOptions = socket;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  onStateChange(listener: (state: ConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Connects once, declares the exchange and resolves; rejects with an
   * AuthenticationError (refused credentials or vhost), a CertificateError or
   * a ConnectionError (unreachable, or no answer within connectTimeoutMs)
   * instead of retrying. Once connected, a lost connection is opened again
   * every reconnectPeriodMs, with every subscription.
   */
  connect(): Promise<void> {
    if (this.#phase === 'open') return Promise.resolve();
    if (this.#phase === 'draining' || this.#phase === 'closing') return Promise.reject(new ConnectionError('amqp broker is disconnecting'));
    this.#connecting ??= this.#open().finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  async #open(): Promise<void> {
    this.#phase = 'connecting';
    this.#set('connecting');
    let model: ChannelModel | undefined;
    try {
      model = await this.#dial();
      this.#watch(model);
      await this.#withTimeout(this.#publisher.attach(model), 'declaring the exchange');
    } catch (error) {
      this.#model = undefined;
      this.#publisher.detach(new ConnectionError('connection failed'));
      if (model) await this.#close(model);
      this.#phase = 'idle';
      this.#set('disconnected');
      throw this.#setupFailure(error);
    }
    this.#phase = 'open';
    this.#set('connected');
  }

  /** Opens a connection within connectTimeoutMs; a connection that comes later is closed. */
  async #dial(): Promise<ChannelModel> {
    const { url, displayUrl, secrets } = this.#options;
    const dialing = amqplib.connect(url, this.#socketOptions);
    try {
      return await this.#withTimeout(dialing, 'connecting');
    } catch (error) {
      dialing.then((late) => late.close().catch(() => undefined)).catch(() => undefined);
      throw connectFailure(error, displayUrl, secrets);
    }
  }

  #withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
    const { displayUrl, connectTimeoutMs } = this.#options;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>(
      (_, reject) =>
        (timer = setTimeout(
          () => reject(new ConnectionError(`no answer from ${displayUrl} within connectTimeoutMs (${connectTimeoutMs} ms) ${what}`)),
          connectTimeoutMs,
        )),
    );
    return Promise.race([promise, late]).finally(() => clearTimeout(timer));
  }

  /** A failure after the connection opened (declaring the exchange) as a typed error. */
  #setupFailure(error: unknown): BrokerError {
    if (error instanceof BrokerError) return error;
    const text = headerText(redactSecrets(error instanceof Error ? error.message : String(error), this.#options.secrets), 500);
    const code = replyCode(error);
    if (code === 403 || code === 406 || code === 404) {
      return new ConnectionError(`${this.#options.displayUrl}: the exchange "${this.#options.exchange}" cannot be used: ${text}`, {
        cause: error,
        retriable: false,
      });
    }
    return new ConnectionError(`cannot connect to ${this.#options.displayUrl}: ${text}`, { cause: error });
  }

  #watch(model: ChannelModel): void {
    this.#model = model;
    // Errors come with 'close' too; without a listener an 'error' would be thrown.
    model.on('error', () => undefined);
    model.on('close', () => this.#lost(model));
  }

  /** The connection closed without disconnect(): everything waiting on it fails, and a new one is opened. */
  #lost(model: ChannelModel): void {
    if (this.#model !== model) return;
    this.#model = undefined;
    this.#publisher.detach(new ConnectionError(`the connection to ${this.#options.displayUrl} was lost before the broker confirmed the message`));
    if (this.#phase !== 'open') return;
    this.#set('reconnecting');
    this.#scheduleReconnect();
  }

  /** Whether `model` is the connection in use (not narrowed by the compiler across awaits, unlike the field). */
  #isCurrent(model: ChannelModel): boolean {
    return this.#model === model;
  }

  #scheduleReconnect(): void {
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => void this.#reconnect(), this.#options.reconnectPeriodMs);
  }

  async #reconnect(): Promise<void> {
    if (this.#phase !== 'open' || this.#model) return;
    let model: ChannelModel;
    try {
      model = await this.#dial();
    } catch {
      if (this.#phase === 'open') this.#scheduleReconnect();
      return;
    }
    if (this.#phase !== 'open') {
      await this.#close(model);
      return;
    }
    this.#watch(model);
    try {
      await this.#withTimeout(this.#publisher.attach(model), 'declaring the exchange');
      for (const consumer of this.#consumers) {
        if (!consumer.active || !this.#isCurrent(model)) continue;
        try {
          await this.#withTimeout(consumer.open(model, this.#options.exchange), 'subscribing again');
        } catch (error) {
          // A refusal of this subscription alone (a channel error) does not hold up the others: it is tried again later.
          if (replyCode(error) === undefined || !this.#isCurrent(model)) throw error;
          this.#consumerLost(consumer);
        }
      }
    } catch {
      // The connection broke again (its close schedules the next attempt), or a step failed: start over.
      if (this.#isCurrent(model)) {
        this.#model = undefined;
        await this.#close(model);
        this.#publisher.detach(new ConnectionError(`the connection to ${this.#options.displayUrl} is being opened again`));
        if (this.#phase === 'open') this.#scheduleReconnect();
      }
      return;
    }
    if (this.#isCurrent(model) && this.#phase === 'open') this.#set('connected');
  }

  /** A subscription's channel closed while the connection is up (a channel error): it opens a new one. */
  readonly #consumerLost = (consumer: Consumer): void => {
    const model = this.#model;
    if (!model || this.#phase !== 'open') return;
    setTimeout(() => {
      if (!consumer.active || this.#model !== model || this.#phase !== 'open') return;
      consumer.open(model, this.#options.exchange).catch(() => {
        if (consumer.active && this.#model === model && this.#phase === 'open') this.#consumerLost(consumer);
      });
    }, this.#options.reconnectPeriodMs);
  };

  /**
   * Stops taking messages: every subscription's consumer is cancelled and its
   * engine stops (the core's drain). Messages received but not started, and
   * failed ones waiting for redelivery, are given back to the broker at once
   * (requeued). Handlers already running may finish (bounded by drainTimeoutMs)
   * and are acknowledged, then the connection closes; what is still
   * unacknowledged then is delivered again by the broker. Rejects with
   * DrainTimeoutError only when handlers were still running at the time limit.
   */
  async disconnect(): Promise<void> {
    if (this.#connecting) await this.#connecting.catch(() => undefined);
    if (this.#phase !== 'open') return;
    this.#phase = 'draining';
    this.#requests.close(new ConnectionError(`disconnected from ${this.#options.displayUrl} before the reply arrived`));
    clearTimeout(this.#reconnectTimer);
    const consumers = [...this.#consumers];
    await Promise.all(consumers.map((consumer) => consumer.cancel(this.#options.connectTimeoutMs)));
    const results: StopResult[] = await Promise.all(consumers.map((consumer) => consumer.spec.engine.stop(this.#pipeline.drainTimeoutMs)));
    let running = 0;
    let queued = 0;
    for (const result of results) {
      running += result.running;
      queued += result.queued;
    }
    this.#phase = 'closing';
    for (const consumer of consumers) consumer.active = false;
    this.#consumers.clear();
    const model = this.#model;
    this.#model = undefined;
    if (model) await this.#close(model);
    this.#publisher.detach(new ConnectionError(`disconnected from ${this.#options.displayUrl} before the broker confirmed the message`));
    this.#phase = 'idle';
    this.#set('closed');
    if (running > 0) throw new DrainTimeoutError(running, this.#pipeline.drainTimeoutMs, queued);
  }

  /**
   * Encodes `body` and publishes it to `topic` (routing key: `/` becomes `.`)
   * on the exchange, persistent. Resolves when the broker confirmed it
   * (publisher confirm); rejects with a retriable PublishError when the broker
   * nacked it or did not confirm it within publishTimeoutMs, an
   * UnroutableError when `mandatory` was set and no queue is bound for the
   * topic, a retriable ConnectionError when not connected (or reconnecting)
   * or when the connection was lost first. The topic, every header and the
   * size are checked before anything is sent: what AMQP cannot carry rejects
   * with a non-retriable InvalidTopicError, InvalidHeaderError or
   * PayloadTooLargeError, and the connection is not affected.
   */
  publish<T = unknown>(topic: string, body: T, options?: AmqpPublishOptions): Promise<void> {
    if (this.#phase !== 'open' && this.#phase !== 'draining') {
      return Promise.reject(new ConnectionError(`cannot publish to ${headerText(String(topic), 200)}: amqp broker is not connected`));
    }
    try {
      routingKey(topic);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#publish(topic, body, options);
  }

  /**
   * Publishes a request and resolves with its reply (see `Requester`). The
   * request goes to `topic` on the exchange like any publish, with the AMQP
   * replyTo property set to this broker's own reply queue
   * (`ktransport.reply.<uuid>`: exclusive, auto-delete, declared on the first
   * request and new after every `connect()`) and a random correlationId; the
   * reply comes back to that queue through the default exchange.
   */
  request<S extends Schema>(topic: string, body: unknown, options: RequestOptions<S> & AmqpPublishOptions & { schema: S }): Promise<Message<InferOutput<S>>>;
  /** Publishes a request and resolves with its reply, its body decoded by its content type. */
  request<T = unknown>(topic: string, body: unknown, options?: RequestOptions & AmqpPublishOptions): Promise<Message<T>>;
  request(topic: string, body: unknown, options?: RequestOptions & AmqpPublishOptions): Promise<Message> {
    return this.#requests.request(topic, body, options);
  }

  /**
   * Delivers messages matching the MQTT-style filter `topic` (`+` and `#`) to
   * `handler`, each body validated by `options.schema` and typed by its
   * output. A body that fails the schema is not retried: it goes to
   * `deadLetter`, or without one is delivered again and again. Otherwise as
   * the signature without a schema.
   */
  subscribe<S extends Schema>(topic: string, handler: Handler<InferOutput<S>>, options: AmqpSubscribeOptions<S> & { schema: S }): Promise<Subscription>;
  /**
   * Delivers messages matching the MQTT-style filter `topic` (`+` and `#`, bound
   * as `*` and `#`) to `handler`, each body decoded by its content type.
   * Resolves once the queue is declared and bound and the consumer started;
   * rejects with a SubscribeError when the broker refuses one of these, a
   * ConfigurationError for a filter, group or option AMQP cannot carry, a
   * ConnectionError when not connected. A message is acknowledged only after
   * its handler resolved or it was dead-lettered; up to `concurrency` handlers
   * run at once, never two with the same key; at most `prefetch` messages are
   * held unacknowledged.
   */
  subscribe<T = unknown>(topic: string, handler: Handler<T>, options?: AmqpSubscribeOptions): Promise<Subscription>;
  async subscribe(filter: string, handler: Handler<never>, options: AmqpSubscribeOptions = {}): Promise<Subscription> {
    const model = this.#model;
    if (this.#phase !== 'open' || !model) throw new ConnectionError(`cannot subscribe to ${headerText(String(filter), 200)}: amqp broker is not connected`);
    const binding = bindingKey(filter);
    const { group } = options;
    const queue = group === undefined ? undefined : groupQueue(group, filter);
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new ConfigurationError(`concurrency must be a whole number >= 1, got ${concurrency}`);
    const count = prefetch('prefetch', options.prefetch ?? this.#options.prefetch);
    if (count < concurrency)
      throw new ConfigurationError(`prefetch (${count}) must be at least concurrency (${concurrency}), or handlers would wait for nothing`);
    const deadLetter = MessagePipeline.deadLetterVia((topic, body, publishOptions) => this.#publish(topic, body, publishOptions));
    // A message with `reply-to` (a request) is answered on the queue it names.
    const consumer = this.#pipeline.consumer(filter, handler, options, deadLetter, this.#reply);
    const engine = new DeliveryEngine({ consumer, concurrency, redeliveryDelayMs: this.#options.redeliveryDelayMs });
    const wire = new Consumer({ filter, group, binding, queue, prefetch: count, engine, onLost: this.#consumerLost });
    return this.#start(model, wire);
  }

  /**
   * The requester's reply queue (RequestWire.subscribe): `queue`
   * (`ktransport.reply.<uuid>`) declared exclusive and auto-delete, not bound,
   * consumed like a subscription (its own channel, opened again after a lost
   * connection); the broker deletes it when the connection closes.
   */
  async #subscribeReplies(queue: string, handler: Handler<Uint8Array>): Promise<Subscription> {
    const model = this.#model;
    if (this.#phase !== 'open' || !model) throw new ConnectionError(`cannot send a request: amqp broker is not connected`);
    const count = this.#options.prefetch;
    const deadLetter = MessagePipeline.deadLetterVia(() => Promise.reject(new ConnectionError('replies are not dead-lettered')));
    const consumer = this.#pipeline.consumer(queue, handler, { codec: 'bytes' }, deadLetter);
    // Settling a waiting request is immediate: every reply the broker pushes is handled at once.
    const engine = new DeliveryEngine({ consumer, concurrency: count, redeliveryDelayMs: this.#options.redeliveryDelayMs });
    return this.#start(
      model,
      new Consumer({ filter: queue, group: undefined, binding: undefined, queue: replyQueue(queue), prefetch: count, engine, onLost: this.#consumerLost }),
    );
  }

  /** Opens a subscription's consumer and returns its Subscription; a refusal rejects with a typed error. */
  async #start(model: ChannelModel, wire: Consumer): Promise<Subscription> {
    const { filter, group, queue, engine } = wire.spec;
    this.#consumers.add(wire);
    try {
      await this.#withTimeout(wire.open(model, this.#options.exchange), 'subscribing');
    } catch (error) {
      this.#consumers.delete(wire);
      await wire.close(false, this.#options.connectTimeoutMs);
      await engine.stop(0);
      if (error instanceof BrokerError) throw error;
      const text = headerText(error instanceof Error ? error.message : String(error), 500);
      if (replyCode(error) === undefined || !this.#model) throw new ConnectionError(`cannot subscribe to ${filter}: ${text}`, { cause: error });
      throw new SubscribeError(filter, `broker refused the subscription to ${filter}${queue ? ` (queue ${queue})` : ''}: ${text}`, { cause: error });
    }
    return loadedSubscription({
      topic: filter,
      group,
      load: engine,
      unsubscribe: () => this.#unsubscribe(wire),
    });
  }

  /**
   * Cancels the consumer. A group's queue stays (durable): queued deliveries go
   * back to it at once (the engine stops), running handlers finish. A queue of
   * its own is deleted after what it received was handled (the engine finishes).
   */
  async #unsubscribe(consumer: Consumer): Promise<void> {
    if (!consumer.active || !this.#consumers.has(consumer)) return;
    const timeout = this.#options.connectTimeoutMs;
    await consumer.cancel(timeout);
    consumer.active = false;
    const { engine, group } = consumer.spec;
    const own = group === undefined;
    if (own) await engine.finish(this.#pipeline.drainTimeoutMs);
    else await engine.stop(this.#pipeline.drainTimeoutMs);
    await consumer.close(own, timeout);
    this.#consumers.delete(consumer);
  }

  /** Closes a connection: done when the broker answered, the socket closed, or connectTimeoutMs passed. */
  async #close(model: ChannelModel): Promise<void> {
    const gone = new Promise<void>((resolve) => model.once('close', () => resolve()));
    await bounded(Promise.race([model.close(), gone]), this.#options.connectTimeoutMs);
  }

  #set(state: ConnectionState): void {
    if (state === this.#state) return;
    this.#state = state;
    for (const listener of [...this.#listeners]) listener(state);
  }
}
