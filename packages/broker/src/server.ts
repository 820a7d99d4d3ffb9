import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { Broker, Handler, SubscribeOptions, Subscription } from './broker.js';
import { subscriptionsOf } from './di/subscribe.js';
import { ConfigurationError, SubscribeError } from './errors.js';

/** Something an App starts and stops: a broker server, a gRPC server. */
export interface Server {
  readonly name: string;
  /** Starts serving; rejects when the server cannot start. */
  start(): Promise<void>;
  /** Stops serving, finishing in-flight work within the server's own time limit. */
  stop(): Promise<void>;
}

/** The part of an inversify container a server needs; a `Container` fits. */
export interface ServiceResolver {
  /** The instance bound to a service identifier. */
  get<T>(id: unknown): T;
}

/** Options of `BrokerServer`. */
export interface BrokerServerOptions {
  broker: Broker;
  /** Name shown in App logs and errors. Default `broker:<system>`. */
  name?: string;
  /** Resolves `services` and registers their `@Subscribe` methods. */
  container?: ServiceResolver;
  /** Service identifiers (classes or tokens) to resolve from `container`. */
  services?: readonly unknown[];
  /**
   * Group for every subscription of this server that names none, so that one
   * service class can run in differently named groups (per environment, per test)
   * without changing its decorators.
   */
  group?: string;
}

interface Registration {
  readonly topic: string;
  readonly handler: Handler<never>;
  readonly options: SubscribeOptions;
}

/**
 * Runs a broker for an App: connects on start, applies every subscription
 * registered before start (keyed by topic and group, so one topic can feed
 * several groups), and drains on stop.
 */
export class BrokerServer implements Server {
  readonly name: string;
  readonly broker: Broker;
  readonly #group: string | undefined;
  readonly #registrations = new Map<string, Registration>();
  #active: Subscription[] = [];
  #running = false;

  constructor(options: BrokerServerOptions) {
    this.broker = options.broker;
    this.name = options.name ?? `broker:${options.broker.system}`;
    this.#group = options.group;
    const { services = [], container } = options;
    if (services.length > 0) {
      if (!container) throw new ConfigurationError('services need a container to be resolved from');
      for (const id of services) this.register(container.get<object>(id));
    }
  }

  /** Registers every `@Subscribe` method of a service instance, bound to it. */
  register(service: object): this {
    const found = subscriptionsOf(service);
    if (found.length === 0) throw new ConfigurationError(`${service.constructor.name} has no @Subscribe methods`);
    for (const { topic, options, method } of found) {
      const fn = (service as Record<string | symbol, unknown>)[method];
      if (typeof fn !== 'function') throw new ConfigurationError(`${service.constructor.name}.${String(method)} is not a method`);
      this.subscribe(topic, fn.bind(service) as Handler<never>, options);
    }
    return this;
  }

  /** Adds a subscription (transport options ride along); applied at start, or at once when already running. */
  subscribe<S extends StandardSchemaV1>(topic: string, handler: Handler<StandardSchemaV1.InferOutput<S>>, options: SubscribeOptions<S> & { schema: S }): this;
  subscribe<T>(topic: string, handler: Handler<T>, options?: SubscribeOptions): this;
  subscribe(topic: string, handler: Handler<never>, given: SubscribeOptions = {}): this {
    const options = given.group === undefined && this.#group !== undefined ? { ...given, group: this.#group } : given;
    const key = `${topic}\u0000${options.group ?? ''}`;
    if (this.#registrations.has(key)) {
      throw new ConfigurationError(`${this.name}: ${topic}${options.group ? ` (group ${options.group})` : ''} already has a handler`);
    }
    const registration = { topic, handler, options };
    this.#registrations.set(key, registration);
    if (this.#running) void this.#apply(registration).catch(() => this.#registrations.delete(key));
    return this;
  }

  /** Connects the broker and applies every registered subscription; rejects (and disconnects) if one fails. */
  async start(): Promise<void> {
    if (this.#running) return;
    await this.broker.connect();
    try {
      for (const registration of this.#registrations.values()) await this.#apply(registration);
    } catch (error) {
      await this.#teardown().catch(() => undefined);
      throw error;
    }
    this.#running = true;
  }

  /** Stops intake and drains in-flight handlers through the broker's disconnect. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    await this.#teardown();
  }

  async #apply({ topic, handler, options }: Registration): Promise<void> {
    try {
      this.#active.push(await this.broker.subscribe(topic, handler, options));
    } catch (error) {
      if (error instanceof SubscribeError || error instanceof ConfigurationError) throw error;
      throw new SubscribeError(topic, `${this.name}: cannot subscribe to ${topic}: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      });
    }
  }

  async #teardown(): Promise<void> {
    this.#active = [];
    await this.broker.disconnect();
  }
}
