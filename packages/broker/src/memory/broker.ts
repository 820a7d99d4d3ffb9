import { randomUUID } from 'node:crypto';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import type {
  Broker,
  ConnectionState,
  Handler,
  ObservableConnection,
  PublishOptions,
  RequestOptions,
  Requester,
  SubscribeOptions,
  Subscription,
} from '../broker.js';
import type { Delivery } from '../engine/delivery.js';
import { DeliveryEngine } from '../engine/engine.js';
import { loadedSubscription } from '../engine/subscription.js';
import { GroupPicker } from '../engine/pick.js';
import { ConfigurationError, ConnectionError, DrainTimeoutError, PublishError } from '../errors.js';
import type { OutgoingMessage } from '../middleware/middleware.js';
import type { Message } from '../message.js';
import { type CommonBrokerOptions, type Consumer, MessagePipeline, type RawMessage } from '../pipeline.js';
import { RequestClient } from '../request.js';
import { assertFilter, assertPublishTopic } from '../topic.js';
import { TopicTrie } from './trie.js';

/** Options of `MemoryBroker`. */
export interface MemoryBrokerOptions extends CommonBrokerOptions {
  /** Wait before a message whose handler failed is delivered again. Default 50 ms. */
  redeliveryDelayMs?: number;
  /** Largest payload accepted by `publish`; larger ones are refused with a PublishError. Default 16 MiB. */
  maxPayloadBytes?: number;
  /**
   * Messages a subscription holds waiting for a handler; when it is full, `publish`
   * waits until it has drained to half (publishers slow down to the handlers'
   * pace instead of filling memory). Default 1,000.
   */
  maxQueued?: number;
}

/** One `subscribe()` call: its engine, and publishes waiting while its queue is full. */
class Member {
  active = true;
  paused = false;
  #waiting: (() => void)[] = [];
  readonly engine: DeliveryEngine;

  constructor(
    readonly route: Route,
    options: { consumer: Consumer; concurrency: number; maxQueued: number; redeliveryDelayMs: number },
  ) {
    this.engine = new DeliveryEngine({
      ...options,
      flow: {
        perKey: false,
        pause: () => (this.paused = true),
        resume: () => {
          this.paused = false;
          for (const go of this.#waiting.splice(0)) go();
        },
      },
    });
  }

  /** Resolves once the queue has room (at once when it has). */
  room(): Promise<void> {
    if (!this.paused || !this.active) return Promise.resolve();
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** Lets waiting publishes go on (the member is gone; they route elsewhere or nowhere). */
  release(): void {
    this.active = false;
    for (const go of this.#waiting.splice(0)) go();
  }
}

/** Where one matching publish goes: every ungrouped subscription, or one member of a group. */
class Route {
  readonly members: Member[] = [];
  readonly #picker = new GroupPicker();

  constructor(
    readonly filter: string,
    readonly group: string | undefined,
  ) {}

  /** The member of the group that gets a message with this key (members leave the list when they unsubscribe). */
  pick(key: string | undefined): Member | undefined {
    return this.#picker.pick(this.members, key);
  }
}

/** Nothing to acknowledge to in-process: a delivery ends in the engine. */
const settled = (): void => undefined;

/**
 * A complete in-process broker: MQTT-style filters matched through a topic trie,
 * groups that load-balance (by key, in turn without one), and the core delivery
 * engine for every subscription (per-key order, bounded queue that makes
 * `publish` wait, redelivery when a handler fails, drain on disconnect). It is
 * the embedded default and a test double for code that takes a `Broker`.
 */
export class MemoryBroker implements Broker, Requester, ObservableConnection {
  readonly system = 'memory';
  readonly #pipeline: MessagePipeline;
  #trie = new TopicTrie<Route>();
  readonly #groups = new Map<string, Route>();
  readonly #members = new Set<Member>();
  readonly #redeliveryDelayMs: number;
  readonly #maxPayloadBytes: number;
  readonly #maxQueued: number;
  readonly #publish: (topic: string, body: unknown, options?: PublishOptions) => Promise<void>;
  #state: 'disconnected' | 'connected' | 'closing' = 'disconnected';
  /** While closing, until every subscription is idle: the handlers' own publishes (dead letters, replies) are still delivered. */
  #draining = false;
  readonly #requests: RequestClient;
  readonly #listeners = new Set<(state: ConnectionState) => void>();

  constructor(options: MemoryBrokerOptions = {}) {
    this.#pipeline = new MessagePipeline(this.system, options);
    this.#redeliveryDelayMs = options.redeliveryDelayMs ?? 50;
    this.#maxPayloadBytes = options.maxPayloadBytes ?? 16 * 1024 * 1024;
    this.#maxQueued = options.maxQueued ?? 1_000;
    if (!Number.isInteger(this.#maxQueued) || this.#maxQueued < 1)
      throw new ConfigurationError(`maxQueued must be a whole number >= 1, got ${this.#maxQueued}`);
    if (!(this.#redeliveryDelayMs >= 0)) throw new ConfigurationError(`redeliveryDelayMs must be >= 0, got ${this.#redeliveryDelayMs}`);
    this.#publish = this.#pipeline.publisher<PublishOptions>((message) => this.#route(message));
    this.#requests = new RequestClient(this, {
      codecs: this.#pipeline.codecs,
      defaultCodec: this.#pipeline.defaultCodec,
      replyTopic: () => `ktransport/reply/${randomUUID()}`,
    });
  }

  /** `connected` between connect() and disconnect(), `disconnected` otherwise. */
  get state(): ConnectionState {
    return this.#state === 'connected' ? 'connected' : 'disconnected';
  }

  /** Calls the listener on every change; returns a function that removes it. */
  onStateChange(listener: (state: ConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Opens the broker (nothing to reach: it lives in this process). */
  connect(): Promise<void> {
    if (this.#state === 'closing') return Promise.reject(new ConnectionError('memory broker is disconnecting'));
    this.#setState('connected');
    return Promise.resolve();
  }

  #setState(state: 'disconnected' | 'connected' | 'closing'): void {
    const before = this.state;
    this.#state = state;
    if (this.state !== before) for (const listener of this.#listeners) listener(this.state);
  }

  /**
   * Stops taking publishes and lets every subscription finish what it holds,
   * queued messages included, within `drainTimeoutMs`: an in-process broker has
   * nobody to hand them back to. What the draining handlers send to this
   * broker's own subscriptions (a dead letter, a reply) is delivered and
   * handled too. Rejects with DrainTimeoutError when handlers
   * were still running then (and counts the queued messages that were dropped).
   */
  async disconnect(): Promise<void> {
    if (this.#state !== 'connected') return;
    this.#setState('closing');
    this.#requests.close();
    const members = [...this.#members];
    // Handlers finishing now may dead-letter (or reply) to subscriptions of this broker: those messages are
    // accepted and still delivered until every subscription is idle at once; then none can come any more.
    const deadline = Date.now() + this.#pipeline.drainTimeoutMs;
    this.#draining = true;
    while (!members.every((member) => member.engine.idle) && Date.now() < deadline) {
      await Promise.all(members.map((member) => member.engine.untilIdle(Math.max(0, deadline - Date.now()))));
    }
    this.#draining = false;
    for (const member of members) member.release();
    const results = await Promise.all(members.map((member) => member.engine.finish(Math.max(0, deadline - Date.now()))));
    this.#members.clear();
    this.#groups.clear();
    this.#trie = new TopicTrie<Route>();
    this.#setState('disconnected');
    const running = results.reduce((sum, r) => sum + r.running, 0);
    const queued = results.reduce((sum, r) => sum + r.queued, 0);
    if (running > 0 || queued > 0) throw new DrainTimeoutError(running, this.#pipeline.drainTimeoutMs, queued);
  }

  /** Encodes `body` and queues it for every matching subscription; resolves once it is queued (waiting while a queue is full). */
  publish<T = unknown>(topic: string, body: T, options?: PublishOptions): Promise<void> {
    if (this.#state !== 'connected') return Promise.reject(new ConnectionError(`cannot publish to ${topic}: memory broker is not connected`));
    try {
      assertPublishTopic(topic);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#publish(topic, body, options);
  }

  /**
   * Publishes a request and resolves with its reply (see `Requester`): the reply
   * comes back on a topic of this broker's own, `ktransport/reply/<uuid>`, new
   * after every reconnection.
   */
  request<S extends StandardSchemaV1>(
    topic: string,
    body: unknown,
    options: RequestOptions<S> & { schema: S },
  ): Promise<Message<StandardSchemaV1.InferOutput<S>>>;
  /** Publishes a request and resolves with its reply, its body decoded by its content type. */
  request<T = unknown>(topic: string, body: unknown, options?: RequestOptions): Promise<Message<T>>;
  request(topic: string, body: unknown, options?: RequestOptions): Promise<Message> {
    return this.#requests.request(topic, body, options);
  }

  /** Delivers messages matching the MQTT-style `filter` to `handler`. */
  subscribe<T>(filter: string, handler: Handler<T>, options: SubscribeOptions = {}): Promise<Subscription> {
    try {
      return Promise.resolve(this.#subscribe(filter, handler, options));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #subscribe<T>(filter: string, handler: Handler<T>, options: SubscribeOptions): Subscription {
    if (this.#state !== 'connected') throw new ConnectionError(`cannot subscribe to ${filter}: memory broker is not connected`);
    assertFilter(filter);
    const via = MessagePipeline.deadLetterVia((t, b, o) => this.#publish(t, b, o));
    const consumer = this.#pipeline.consumer(filter, handler, options, via, via);
    const key = options.group === undefined ? undefined : `${options.group}\u0000${filter}`;
    let route = key === undefined ? undefined : this.#groups.get(key);
    const fresh = !route;
    route ??= new Route(filter, options.group);
    const member = new Member(route, {
      consumer,
      concurrency: options.concurrency ?? 1,
      maxQueued: this.#maxQueued,
      redeliveryDelayMs: this.#redeliveryDelayMs,
    });
    if (fresh) {
      this.#trie.add(filter, route);
      if (key !== undefined) this.#groups.set(key, route);
    }
    route.members.push(member);
    this.#members.add(member);
    const engine = member.engine;
    return loadedSubscription({
      topic: filter,
      group: options.group,
      load: engine,
      unsubscribe: () => this.#unsubscribe(member, key),
    });
  }

  async #unsubscribe(member: Member, key: string | undefined): Promise<void> {
    if (!member.active) return;
    member.release();
    const route = member.route;
    route.members.splice(route.members.indexOf(member), 1);
    this.#members.delete(member);
    if (route.members.length === 0) {
      this.#trie.remove(route.filter, route);
      if (key !== undefined) this.#groups.delete(key);
    }
    // What was already queued for this member is still handled: it was accepted for it.
    await member.engine.finish(this.#pipeline.drainTimeoutMs);
  }

  #route(message: OutgoingMessage<PublishOptions>): Promise<void> {
    if (message.payload.byteLength > this.#maxPayloadBytes) {
      return Promise.reject(
        new PublishError(message.topic, `payload of ${message.payload.byteLength} bytes exceeds maxPayloadBytes (${this.#maxPayloadBytes})`),
      );
    }
    // Headers copied: what the publisher's middleware holds is not what a handler gets.
    const raw: { -readonly [K in keyof RawMessage]: RawMessage[K] } = {
      topic: message.topic,
      body: message.payload,
      headers: { ...message.headers },
      timestamp: Date.now(),
    };
    if (message.key !== undefined) raw.key = message.key;
    const id = message.headers['message-id'];
    if (id !== undefined) raw.id = id;
    return this.#deliver(raw);
  }

  /** Queues the message for every target; while one of them is full, waits for room and routes again. */
  #deliver(raw: RawMessage): Promise<void> {
    if (this.#state !== 'connected' && !this.#draining) {
      return Promise.reject(new ConnectionError(`cannot publish to ${raw.topic}: the memory broker disconnected before the message was queued`));
    }
    const routes = this.#trie.match(raw.topic);
    // The usual case: one route with one member (or a group), no queue full.
    const first = routes.length === 1 ? routes[0] : undefined;
    if (first !== undefined && (first.group !== undefined || first.members.length === 1)) {
      const member = first.group === undefined ? first.members[0] : first.pick(raw.key);
      if (member === undefined) return RESOLVED;
      if (member.paused) return member.room().then(() => this.#deliver(raw));
      member.engine.push(delivery(raw));
      return RESOLVED;
    }
    const targets: Member[] = [];
    for (const route of routes) {
      if (route.group === undefined) for (const member of route.members) targets.push(member);
      else {
        const member = route.pick(raw.key);
        if (member !== undefined) targets.push(member);
      }
    }
    for (const member of targets) if (member.paused) return member.room().then(() => this.#deliver(raw));
    // Each member gets a message of its own; a single one can have the original.
    const only = targets.length === 1 ? targets[0] : undefined;
    if (only !== undefined) only.engine.push(delivery(raw));
    else for (const member of targets) member.engine.push(delivery({ ...raw, headers: { ...raw.headers } }));
    return RESOLVED;
  }
}

const RESOLVED = Promise.resolve();

function delivery(message: RawMessage): Delivery {
  return { message, orderingKey: message.key, ack: settled, nack: settled };
}
