import { BrokerServer, type BrokerServerOptions, type Handler, type Server, type SubscribeOptions } from '@ktransport/broker';
import { RedisBroker } from './broker.js';
import type { RedisBrokerOptions, RedisSubscribeOptions } from './options.js';

type Schema = NonNullable<SubscribeOptions['schema']>;
type SchemaOutput<S extends Schema> = NonNullable<S['~standard']['types']>['output'];

/** The core BrokerServer's options (name, default `redis`; container, services, group), with a Redis broker. */
export interface RedisServerOptions extends Omit<BrokerServerOptions, 'broker'> {
  /** The broker to run (share it with publishers through the BROKER token), or options for a new one. */
  broker: RedisBroker | RedisBrokerOptions;
}

/**
 * Runs a RedisBroker for an App: connects on start, applies the `@Subscribe`
 * methods of its services and the subscriptions added before start (one
 * consumer group per subscription group), and drains on stop. It composes the
 * core BrokerServer.
 */
export class RedisServer implements Server {
  readonly name: string;
  readonly broker: RedisBroker;
  readonly #server: BrokerServer;

  constructor({ broker, name, ...rest }: RedisServerOptions) {
    this.broker = broker instanceof RedisBroker ? broker : new RedisBroker(broker);
    this.#server = new BrokerServer({ ...rest, broker: this.broker, name: name ?? 'redis' });
    this.name = this.#server.name;
  }

  /** Registers every `@Subscribe` method of a service instance. */
  register(service: object): this {
    this.#server.register(service);
    return this;
  }

  /** Adds a subscription whose bodies are validated by `options.schema` and typed by its output; made at start (or at once when running). */
  subscribe<S extends Schema>(topic: string, handler: Handler<SchemaOutput<S>>, options: RedisSubscribeOptions<S> & { schema: S }): this;
  /** Adds a subscription; made at start (or at once when running). One topic may have one handler per group. */
  subscribe<T>(topic: string, handler: Handler<T>, options?: RedisSubscribeOptions): this;
  subscribe(topic: string, handler: Handler<never>, options?: RedisSubscribeOptions): this {
    this.#server.subscribe(topic, handler, options);
    return this;
  }

  /**
   * Connects the broker and makes every registered subscription (consumer
   * groups are created when missing); rejects, and disconnects, when the
   * connection or any subscription fails, so that a service never runs without
   * one of its handlers.
   */
  start(): Promise<void> {
    return this.#server.start();
  }

  /**
   * Disconnects the broker: every subscription stops reading, running handlers
   * finish within `drainTimeoutMs` and are acknowledged; entries of a group not
   * handled stay pending for the group. Rejects with a DrainTimeoutError when
   * handlers were still running at the time limit.
   */
  stop(): Promise<void> {
    return this.#server.stop();
  }
}
