import { randomUUID } from 'node:crypto';
import type { Broker, ConnectionState, Handler, Message, ObservableConnection, RequestOptions, Requester, Subscription } from '@ktransport/broker';
import { ConfigurationError, ConnectionError, DrainTimeoutError, HEADER } from '@ktransport/broker';
import {
  assertFilter,
  assertPublishTopic,
  headerText,
  loadedSubscription,
  MessagePipeline,
  type OutgoingMessage,
  type RawMessage,
  RequestClient,
  type StopResult,
} from '@ktransport/broker/transport';
import type { IClientOptions, MqttClient } from 'mqtt';
import { Acks, type Incoming } from './acks.js';
import { Connection } from './connection.js';
import { sharedSubscriptionsUnavailable, subscribeFailure } from './errors.js';
import { fromPacket, KEY_HEADER, mqttStringBytes } from './headers.js';
import { Member } from './member.js';
import type {
  EncodedWill,
  InferOutput,
  MqttBrokerOptions,
  MqttPublishOptions,
  MqttSubscribeOptions,
  MqttWill,
  QoS,
  ResolvedOptions,
  Schema,
} from './options.js';
import { assertMqttJs } from './mqttjs.js';
import { clientOptions, qos, resolveOptions } from './options.js';
import { matches, type Route, RouteTable } from './routes.js';
import { INTERNAL, Sender, type SendOptions } from './send.js';

type Phase = 'idle' | 'connecting' | 'open' | 'draining' | 'closing';

/** A message of a resumed session that arrived before its subscription was made again. */
interface Parked {
  readonly incoming: Incoming;
  readonly message: RawMessage;
}

/**
 * A Broker over MQTT 3.1.1 or 5 (mqtt.js): the MQTT wire on the core delivery
 * engine. One connection carries every subscription; a received PUBLISH is
 * routed to subscriptions by subscription identifier or topic trie, each
 * `subscribe()` call hands its share to its own DeliveryEngine (queue,
 * concurrency, per-key order, redelivery, drain), and the PUBLISH is
 * acknowledged only once every delivery made from it was handled. See the
 * package README for the semantics.
 */
export class MqttBroker implements Broker, Requester, ObservableConnection {
  readonly system = 'mqtt';
  readonly #options: ResolvedOptions;
  readonly #pipeline: MessagePipeline;
  readonly #publish: (topic: string, body: unknown, options?: SendOptions) => Promise<void>;
  readonly #sender: Sender;
  readonly #clientOptions: IClientOptions;
  readonly #connection: Connection;
  readonly #routes: RouteTable;
  /** Every subscription whose engine may still hold deliveries: subscribed, or unsubscribing and finishing. */
  readonly #members = new Set<Member>();
  #parked: Parked[] = [];
  #client: MqttClient | undefined;
  #acks: Acks | undefined;
  #phase: Phase = 'idle';
  #connecting: Promise<void> | undefined;
  readonly #requests: RequestClient;

  constructor(options: MqttBrokerOptions = {}) {
    // The protocol layer works on mqtt.js internals: any other mqtt.js is refused here, loudly (mqttjs.ts).
    assertMqttJs();
    this.#options = resolveOptions(options, randomUUID().slice(0, 8));
    this.#pipeline = new MessagePipeline(this.system, options);
    const will = options.will ? this.#encodeWill(options.will) : undefined;
    this.#clientOptions = clientOptions(this.#options, options, will);
    this.#connection = new Connection(this.#options);
    this.#routes = new RouteTable(this.#options.sharedSubscriptions);
    // Ready only after mqtt.js resubscribed on a reconnect, so that nothing published then is missed by our own subscriptions.
    this.#sender = new Sender(
      this.#options,
      () => (this.#phase === 'open' || this.#phase === 'draining' ? this.#client : undefined),
      () => this.#connection.state === 'connected',
    );
    this.#publish = this.#pipeline.publisher<SendOptions>((message) => this.#sender.send(message));
    this.#requests = new RequestClient(this, {
      codecs: this.#pipeline.codecs,
      defaultCodec: this.#pipeline.defaultCodec,
      replyTopic: () => `ktransport/reply/${randomUUID()}`,
      subscribeOptions: { qos: 1 },
    });
  }

  get state(): ConnectionState {
    return this.#connection.state;
  }

  onStateChange(listener: (state: ConnectionState) => void): () => void {
    return this.#connection.onStateChange(listener);
  }

  /** Connects once; rejects with AuthenticationError or ConnectionError instead of retrying forever. */
  connect(): Promise<void> {
    if (this.#phase === 'open') return Promise.resolve();
    if (this.#phase === 'draining' || this.#phase === 'closing') return Promise.reject(new ConnectionError('mqtt broker is disconnecting'));
    this.#connecting ??= this.#open().finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  async #open(): Promise<void> {
    this.#phase = 'connecting';
    try {
      this.#client = await this.#connection.open(this.#clientOptions, (client) => {
        this.#client = client;
        this.#acks = new Acks(client, (incoming) => this.#dispatch(incoming));
      });
    } catch (error) {
      this.#client = undefined;
      this.#acks = undefined;
      this.#phase = 'idle';
      throw error;
    }
    this.#phase = 'open';
  }

  /**
   * Stops taking messages and starts no queued one: every subscription's engine
   * stops (the core's drain). Messages received but not started, and failed ones
   * waiting for redelivery, are given up at once, unacknowledged. The handlers
   * already running may finish (bounded by drainTimeoutMs) and are acknowledged,
   * then the connection closes without acknowledging the rest: a persistent
   * session gets those again. Rejects with DrainTimeoutError only when handlers
   * were still running at the time limit.
   */
  async disconnect(): Promise<void> {
    if (this.#connecting) await this.#connecting.catch(() => undefined);
    if (this.#phase !== 'open') return;
    this.#phase = 'draining';
    this.#requests.close(new ConnectionError(`disconnected from ${this.#options.displayUrl} before the reply arrived`));
    let queued = this.#parked.length;
    for (const { incoming } of this.#parked.splice(0)) incoming.finish(false);
    const members = [...this.#members];
    for (const member of members) this.#detach(member);
    const results: StopResult[] = await Promise.all(members.map((member) => member.engine.stop(this.#pipeline.drainTimeoutMs)));
    let running = 0;
    for (const result of results) {
      running += result.running;
      queued += result.queued;
    }
    this.#phase = 'closing';
    this.#members.clear();
    this.#routes.clear();
    this.#acks?.close();
    await this.#connection.close();
    this.#sender.failPending(new ConnectionError(`disconnected from ${this.#options.displayUrl} before the broker confirmed the message`));
    this.#client = undefined;
    this.#acks = undefined;
    this.#phase = 'idle';
    if (running > 0) throw new DrainTimeoutError(running, this.#pipeline.drainTimeoutMs, queued);
  }

  /**
   * Encodes `body` and publishes it to `topic` with `options.qos` (default 1).
   * Resolves when the broker accepted the message: on PUBACK (QoS 1), PUBCOMP
   * (QoS 2), or once written (QoS 0). At most the broker's Receive Maximum QoS
   * 1/2 publishes are in flight; more wait for a slot instead of being refused.
   * The topic, every header and the size are checked before anything is sent:
   * what MQTT cannot carry rejects with a non-retriable InvalidTopicError,
   * InvalidHeaderError, PayloadTooLargeError or HeadersNotSupportedError (headers
   * on MQTT 3.1.1), and the connection is not affected. A refusal by the broker
   * rejects with a PublishError; a publish while not connected or reconnecting,
   * with a retriable ConnectionError.
   */
  publish<T = unknown>(topic: string, body: T, options?: MqttPublishOptions): Promise<void> {
    if (this.#phase !== 'open' && this.#phase !== 'draining') {
      return Promise.reject(new ConnectionError(`cannot publish to ${topic}: mqtt broker is not connected`));
    }
    try {
      assertPublishTopic(topic);
      if (options?.qos !== undefined) qos('qos', options.qos);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#publish(topic, body, options);
  }

  /**
   * Publishes a request and resolves with its reply (see `Requester`). MQTT 5:
   * the request carries the Response Topic (this broker's own
   * `ktransport/reply/<uuid>`, subscribed with QoS 1 on the first request and
   * new after every `connect()`) and a random Correlation Data; the reply comes
   * back there with the same Correlation Data. MQTT 3.1.1 has neither: rejects
   * with a ConfigurationError.
   */
  request<S extends Schema>(topic: string, body: unknown, options: RequestOptions<S> & MqttPublishOptions & { schema: S }): Promise<Message<InferOutput<S>>>;
  /** Publishes a request and resolves with its reply, its body decoded by its content type. */
  request<T = unknown>(topic: string, body: unknown, options?: RequestOptions & MqttPublishOptions): Promise<Message<T>>;
  request(topic: string, body: unknown, options?: RequestOptions & MqttPublishOptions): Promise<Message> {
    if (this.#options.protocolVersion !== 5) {
      return Promise.reject(
        new ConfigurationError(
          `cannot send a request to ${topic}: request–reply needs MQTT 5 (Response Topic and Correlation Data); this broker speaks MQTT 3.1.1`,
        ),
      );
    }
    return this.#requests.request(topic, body, options);
  }

  /**
   * Delivers messages matching the MQTT filter `topic` (`+` and `#` wildcards)
   * to `handler`, each body validated by `options.schema` and typed by its
   * output. A body that fails the schema is not retried: it goes to
   * `deadLetter`, or without one is delivered again and again. Otherwise as
   * the signature without a schema.
   */
  subscribe<S extends Schema>(topic: string, handler: Handler<InferOutput<S>>, options: MqttSubscribeOptions<S> & { schema: S }): Promise<Subscription>;
  /**
   * Delivers messages matching the MQTT filter `topic` (`+` and `#` wildcards)
   * to `handler`, each body decoded by its content type. Resolves once the
   * broker granted the subscription; rejects with a SubscribeError when it
   * refuses it, a ConfigurationError for a filter or group MQTT cannot carry, a
   * ConnectionError when not connected. A message is acknowledged (PUBACK,
   * PUBREC for QoS 2) only after its handler resolved or it was dead-lettered;
   * up to `concurrency` handlers run at once, never two with the same key.
   */
  subscribe<T = unknown>(topic: string, handler: Handler<T>, options?: MqttSubscribeOptions): Promise<Subscription>;
  async subscribe(filter: string, handler: Handler<never>, options: MqttSubscribeOptions = {}): Promise<Subscription> {
    if (this.#phase !== 'open') throw new ConnectionError(`cannot subscribe to ${filter}: mqtt broker is not connected`);
    assertFilter(filter);
    if (filter.startsWith('$share/')) throw new ConfigurationError(`subscribe to the plain filter with the group option instead of "${filter}"`);
    const { group } = options;
    if (group !== undefined && (group.length === 0 || /[/+#]/.test(group)))
      throw new ConfigurationError(`invalid group "${headerText(group, 200)}": it must be non-empty without /, + or #`);
    // Mosquitto closes the connection of a SUBSCRIBE it cannot read, and mqtt.js would send it again on every reconnect.
    const sent = group === undefined ? filter : `$share/${group}/${filter}`;
    if (mqttStringBytes(sent) < 0) {
      throw new ConfigurationError(
        `cannot subscribe to "${headerText(sent, 200)}": a filter or group must be valid MQTT UTF-8 without control characters, at most 65,535 bytes`,
      );
    }
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new ConfigurationError(`concurrency must be a whole number >= 1, got ${concurrency}`);
    const wanted = qos('qos', options.qos ?? 1);
    const deadLetter = MessagePipeline.deadLetterVia((topic, body, publishOptions) => this.#publish(topic, body, { ...publishOptions, [INTERNAL]: true }));
    // The same route carries replies to requests (a message with a Response Topic, MQTT 5 only).
    const consumer = this.#pipeline.consumer(filter, handler, options, deadLetter, deadLetter);
    const existing = this.#routes.get(filter, group);
    const route = existing ?? this.#routes.add(filter, group, wanted);
    const member = new Member(wanted, route, { consumer, concurrency, redeliveryDelayMs: this.#options.redeliveryDelayMs });
    route.members.push(member);
    this.#members.add(member);
    // From here on new messages for the route reach the member: what the resumed session delivered
    // before goes first, or a key's order would depend on whether a message came before or after subscribe().
    this.#unpark(route);
    try {
      if (!existing || wanted > route.qos) route.ready = this.#mqttSubscribe(route, route.wantedQos());
      await route.ready;
    } catch (error) {
      this.#detach(member);
      // Parked messages it may have taken were accepted for it: they are still handled, as on unsubscribe.
      void member.engine.finish(this.#pipeline.drainTimeoutMs).finally(() => this.#members.delete(member));
      throw error;
    }
    const engine = member.engine;
    return loadedSubscription({
      topic: filter,
      group,
      load: engine,
      unsubscribe: () => this.#unsubscribe(member),
    });
  }

  async #mqttSubscribe(route: Route, wanted: QoS): Promise<void> {
    const client = this.#client;
    if (!client) throw new ConnectionError(`cannot subscribe to ${route.filter}: mqtt broker is not connected`);
    const identifiers = this.#options.protocolVersion === 5 && client.serverProperties?.subscriptionIdentifiersAvailable !== false;
    // MQTT 5 CONNACK "Shared Subscription Available: 0": a $share/ subscription would be refused or, worse, taken literally.
    if (route.group !== undefined && route.mqttFilter !== route.filter && client.serverProperties?.sharedSubscriptionAvailable === false) {
      throw sharedSubscriptionsUnavailable(route.filter, route.group, 'the broker announced in CONNACK that it has no shared subscriptions');
    }
    const previous = route.qos;
    route.qos = wanted;
    try {
      await client.subscribeAsync(route.mqttFilter, identifiers ? { qos: wanted, properties: { subscriptionIdentifier: route.id } } : { qos: wanted });
    } catch (error) {
      route.qos = previous;
      throw subscribeFailure(route.filter, route.group, route.mqttFilter, error);
    }
  }

  async #unsubscribe(member: Member): Promise<void> {
    if (!member.active) return;
    const route = this.#detach(member);
    const client = this.#client;
    if (route && client && this.#phase === 'open' && !this.#routes.inUse(route.mqttFilter)) {
      // Bounded: while reconnecting, mqtt.js would only send it later.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#options.connectTimeoutMs)));
      await Promise.race([
        client.unsubscribeAsync(route.mqttFilter).then(
          () => undefined,
          () => undefined,
        ),
        late,
      ]);
      clearTimeout(timer);
    }
    // What was already received for this subscription is still handled: it was accepted for it.
    // (A disconnect() meanwhile stops the engine, which ends this wait too.)
    await member.engine.finish(this.#pipeline.drainTimeoutMs);
    this.#members.delete(member);
  }

  /**
   * Takes a member out of its route: nothing new is routed to it (its engine
   * keeps what it holds). Returns the route when that was its last member (the
   * MQTT subscription should go).
   */
  #detach(member: Member): Route | undefined {
    if (!member.active) return undefined;
    member.active = false;
    const route = member.route;
    const index = route.members.indexOf(member);
    if (index >= 0) route.members.splice(index, 1);
    if (route.members.length > 0) return undefined;
    this.#routes.remove(route);
    return route;
  }

  /** Hands a received packet to the members of every route it belongs to. */
  #dispatch(incoming: Incoming): void {
    if (this.#phase !== 'open' && this.#phase !== 'connecting') return incoming.finish(false);
    const message = this.#rawMessage(incoming);
    const routes = this.#routes.resolve(incoming.topic, incoming.packet.properties?.subscriptionIdentifier);
    let only: Member | undefined;
    let more: Member[] | undefined;
    for (const route of routes) {
      for (const member of route.targets(message.key)) {
        if (only === undefined) only = member;
        else (more ??= [only]).push(member);
      }
    }
    if (only === undefined) {
      // A resumed session delivers before subscribe() is called again: keep it for that subscription.
      if (!this.#options.clean) this.#parked.push({ incoming, message });
      else incoming.finish(true);
      return;
    }
    // Every member gets a message of its own; a single one can have the one just made.
    if (more) this.#pushAll(incoming, message, more);
    else only.push(message, incoming);
  }

  /**
   * Hands copies of one message to several members. The packet is held across
   * the loop, so that a delivery settled at once (an engine that stopped taking
   * any) cannot settle the packet before the others are counted.
   */
  #pushAll(incoming: Incoming, message: RawMessage, members: readonly Member[]): void {
    incoming.hold();
    for (const member of members) member.push({ ...message, headers: { ...message.headers } }, incoming);
    incoming.release(true);
  }

  #unpark(route: Route): void {
    if (this.#parked.length === 0) return;
    const left: Parked[] = [];
    for (const parked of this.#parked) {
      const targets = matches(route.filter, parked.incoming.topic) ? route.targets(parked.message.key) : [];
      if (targets.length === 0) left.push(parked);
      else this.#pushAll(parked.incoming, parked.message, targets);
    }
    this.#parked = left;
  }

  #rawMessage(incoming: Incoming): RawMessage {
    const packet = incoming.packet;
    const headers = fromPacket(packet);
    const body = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const message: { -readonly [K in keyof RawMessage]: RawMessage[K] } = { topic: incoming.topic, body, headers, raw: packet };
    const key = headers[KEY_HEADER];
    if (key !== undefined) message.key = key;
    const id = headers[HEADER.messageId];
    if (id !== undefined) message.id = id;
    return message;
  }

  #encodeWill(will: MqttWill): EncodedWill {
    let message: OutgoingMessage;
    try {
      message = this.#pipeline.encode(will.topic, will.body, {
        ...(will.codec ? { codec: will.codec } : {}),
        ...(will.headers ? { headers: will.headers } : {}),
      });
    } catch (error) {
      if (error instanceof ConfigurationError) throw error;
      throw new ConfigurationError(`cannot encode the will for ${will.topic}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    return {
      topic: will.topic,
      payload: message.payload,
      headers: this.#options.protocolVersion === 5 ? message.headers : {},
      qos: will.qos ?? 1,
      retain: will.retain ?? false,
    };
  }
}
