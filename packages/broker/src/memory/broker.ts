import type { Broker, ConnectionState, Handler, ObservableConnection, PublishOptions, SubscribeOptions, Subscription } from '../broker.js';
import { InFlight } from '../drain.js';
import { ConfigurationError, ConnectionError, DrainTimeoutError, PublishError } from '../errors.js';
import type { OutgoingMessage } from '../middleware/middleware.js';
import { type CommonBrokerOptions, type Consumer, MessagePipeline, type RawMessage } from '../pipeline.js';
import { assertFilter, assertPublishTopic } from '../topic.js';
import { Fifo } from './fifo.js';
import { TopicTrie } from './trie.js';

export interface MemoryBrokerOptions extends CommonBrokerOptions {
  /** Wait before a message whose handler failed is delivered again. Default 50 ms. */
  redeliveryDelayMs?: number;
  /** Largest payload accepted by `publish`; larger ones are refused with a PublishError. Default 16 MiB. */
  maxPayloadBytes?: number;
}

/** One message on its way to a member; counted in flight (by its first member) until handled, dead-lettered or abandoned. */
interface Delivery {
  readonly message: RawMessage;
  readonly owner: Member;
}

/** One subscriber: a queue drained by at most `concurrency` handlers at once. */
class Member {
  readonly queue = new Fifo<Delivery>();
  running = 0;
  active = true;
  readonly inFlight = new InFlight();

  constructor(
    readonly consumer: Consumer,
    readonly concurrency: number,
    readonly route: Route,
  ) {}
}

/** Where one matching publish goes: every ungrouped subscription, or one member of a group. */
class Route {
  readonly members: Member[] = [];
  #next = 0;

  constructor(
    readonly filter: string,
    readonly group: string | undefined,
  ) {}

  pick(): Member | undefined {
    const members = this.members.filter((m) => m.active);
    if (members.length === 0) return undefined;
    return members[this.#next++ % members.length];
  }
}

/**
 * A complete in-process broker: MQTT-style filters matched through a topic trie,
 * groups that load-balance, redelivery when a handler fails, bounded concurrency
 * and drain on disconnect. It is the embedded default and a test double for
 * unit tests of code that takes a `Broker`.
 */
export class MemoryBroker implements Broker, ObservableConnection {
  readonly system = 'memory';
  readonly #pipeline: MessagePipeline;
  #trie = new TopicTrie<Route>();
  readonly #groups = new Map<string, Route>();
  readonly #inFlight = new InFlight();
  readonly #members = new Set<Member>();
  readonly #redeliveryDelayMs: number;
  readonly #maxPayloadBytes: number;
  readonly #publish: (topic: string, body: unknown, options?: PublishOptions) => Promise<void>;
  #abort = new AbortController();
  #state: 'disconnected' | 'connected' | 'closing' = 'disconnected';
  readonly #listeners = new Set<(state: ConnectionState) => void>();

  constructor(options: MemoryBrokerOptions = {}) {
    this.#pipeline = new MessagePipeline(this.system, options);
    this.#redeliveryDelayMs = options.redeliveryDelayMs ?? 50;
    this.#maxPayloadBytes = options.maxPayloadBytes ?? 16 * 1024 * 1024;
    this.#publish = this.#pipeline.publisher<PublishOptions>((message) => this.#route(message));
  }

  /** `connected` between connect() and disconnect(), `disconnected` otherwise. */
  get state(): ConnectionState {
    return this.#state === 'connected' ? 'connected' : 'disconnected';
  }

  onStateChange(listener: (state: ConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Opens the broker (nothing to reach: it lives in this process). */
  connect(): Promise<void> {
    try {
      this.#connect();
    } catch (error) {
      return Promise.reject(error);
    }
    return Promise.resolve();
  }

  #connect(): void {
    if (this.#state === 'closing') throw new ConnectionError('memory broker is disconnecting');
    if (this.#state === 'connected') return;
    this.#abort = new AbortController();
    this.#setState('connected');
  }

  #setState(state: 'disconnected' | 'connected' | 'closing'): void {
    const before = this.state;
    this.#state = state;
    if (this.state !== before) for (const listener of this.#listeners) listener(this.state);
  }

  async disconnect(): Promise<void> {
    if (this.#state !== 'connected') return;
    this.#setState('closing');
    // Queued messages are still handled while draining: an in-process broker cannot deliver them again later.
    const pending = await this.#inFlight.idle(this.#pipeline.drainTimeoutMs);
    this.#abort.abort(new ConnectionError('memory broker disconnected'));
    let queued = 0;
    for (const member of this.#members) {
      member.active = false;
      for (const delivery of member.queue.drain()) {
        queued++;
        this.#settle(delivery);
      }
    }
    this.#members.clear();
    this.#groups.clear();
    this.#trie = new TopicTrie<Route>();
    this.#setState('disconnected');
    if (pending > 0) throw new DrainTimeoutError(pending - queued, this.#pipeline.drainTimeoutMs, queued);
  }

  /** Encodes `body` and queues it for every matching subscription; resolves once it is queued. */
  publish<T = unknown>(topic: string, body: T, options?: PublishOptions): Promise<void> {
    if (this.#state !== 'connected') return Promise.reject(new ConnectionError(`cannot publish to ${topic}: memory broker is not connected`));
    try {
      assertPublishTopic(topic);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#publish(topic, body, options);
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
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new ConfigurationError(`concurrency must be a whole number >= 1, got ${concurrency}`);
    const consumer = this.#pipeline.consumer(
      filter,
      handler,
      options,
      MessagePipeline.deadLetterVia((t, b, o) => this.#publish(t, b, o)),
    );
    const key = options.group === undefined ? undefined : `${options.group}\u0000${filter}`;
    let route = key === undefined ? undefined : this.#groups.get(key);
    if (!route) {
      route = new Route(filter, options.group);
      this.#trie.add(filter, route);
      if (key !== undefined) this.#groups.set(key, route);
    }
    const member = new Member(consumer, concurrency, route);
    route.members.push(member);
    this.#members.add(member);
    return {
      topic: filter,
      ...(options.group === undefined ? {} : { group: options.group }),
      unsubscribe: () => this.#unsubscribe(member, key),
    };
  }

  async #unsubscribe(member: Member, key: string | undefined): Promise<void> {
    if (!member.active) return;
    member.active = false;
    const route = member.route;
    route.members.splice(route.members.indexOf(member), 1);
    this.#members.delete(member);
    if (route.members.length === 0) {
      this.#trie.remove(route.filter, route);
      if (key !== undefined) this.#groups.delete(key);
    }
    // What was already queued for this member is still handled: it was accepted for it.
    await member.inFlight.idle(this.#pipeline.drainTimeoutMs);
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
    const targets: Member[] = [];
    for (const route of this.#trie.match(message.topic)) {
      if (route.group === undefined) for (const member of route.members) targets.push(member);
      else {
        const member = route.pick();
        if (member) targets.push(member);
      }
    }
    // Each member gets a message of its own; a single one can have the original.
    const only = targets.length === 1 ? targets[0] : undefined;
    if (only !== undefined) this.#accept(only, raw);
    else for (const member of targets) this.#accept(member, { ...raw, headers: { ...raw.headers } });
    return Promise.resolve();
  }

  /** Tracks a new delivery from acceptance until it is handled, so that drain waits for queued messages too. */
  #accept(member: Member, message: RawMessage): void {
    this.#inFlight.enter();
    member.inFlight.enter();
    this.#enqueue(member, { message, owner: member });
  }

  #settle(delivery: Delivery): void {
    delivery.owner.inFlight.leave();
    this.#inFlight.leave();
  }

  #enqueue(member: Member, delivery: Delivery): void {
    member.queue.push(delivery);
    this.#pump(member);
  }

  #pump(member: Member): void {
    while (member.running < member.concurrency) {
      const delivery = member.queue.shift();
      if (delivery === undefined) break;
      member.running++;
      void member.consumer(delivery.message, this.#abort.signal).then(
        () => {
          member.running--;
          this.#settle(delivery);
          this.#pump(member);
        },
        () => {
          member.running--;
          this.#redeliver(member, delivery);
          this.#pump(member);
        },
      );
    }
  }

  /** A failed message goes back to its route after a delay (to another member of a group if one is left). */
  #redeliver(member: Member, delivery: Delivery): void {
    const signal = this.#abort.signal;
    const giveUp = (): void => {
      clearTimeout(timer);
      this.#settle(delivery);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', giveUp);
      const target = member.route.group === undefined ? member : (member.route.pick() ?? member);
      this.#enqueue(target, delivery);
    }, this.#redeliveryDelayMs);
    signal.addEventListener('abort', giveUp, { once: true });
  }
}
