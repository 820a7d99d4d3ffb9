import { BrokerServer, type BrokerServerOptions, type Handler, type Server, type SubscribeOptions } from '@ktransport/broker';
import { KafkaBroker } from './broker.js';
import type { KafkaBrokerOptions, KafkaSubscribeOptions } from './options.js';

type Schema = NonNullable<SubscribeOptions['schema']>;
type SchemaOutput<S extends Schema> = NonNullable<S['~standard']['types']>['output'];

/** The core BrokerServer's options (name, default `kafka`; container, services, group), with a Kafka broker. */
export interface KafkaServerOptions extends Omit<BrokerServerOptions, 'broker'> {
  /** The broker to run (share it with publishers through the BROKER token), or options for a new one. */
  broker: KafkaBroker | KafkaBrokerOptions;
}

/**
 * Runs a KafkaBroker for an App: connects on start, applies the `@Subscribe`
 * methods of its services and the subscriptions added before start (one
 * consumer group per subscription group), and drains on stop. It composes the
 * core BrokerServer.
 */
export class KafkaServer implements Server {
  readonly name: string;
  readonly broker: KafkaBroker;
  readonly #server: BrokerServer;

  constructor({ broker, name, ...rest }: KafkaServerOptions) {
    this.broker = broker instanceof KafkaBroker ? broker : new KafkaBroker(broker);
    this.#server = new BrokerServer({ ...rest, broker: this.broker, name: name ?? 'kafka' });
    this.name = this.#server.name;
  }

  /** Registers every `@Subscribe` method of a service instance. */
  register(service: object): this {
    this.#server.register(service);
    return this;
  }

  /** Adds a subscription whose bodies are validated by `options.schema` and typed by its output; made at start (or at once when running). */
  subscribe<S extends Schema>(topic: string, handler: Handler<SchemaOutput<S>>, options: KafkaSubscribeOptions<S> & { schema: S }): this;
  /** Adds a subscription; made at start (or at once when running). One topic may have one handler per group. */
  subscribe<T>(topic: string, handler: Handler<T>, options?: KafkaSubscribeOptions): this;
  subscribe(topic: string, handler: Handler<never>, options?: KafkaSubscribeOptions): this {
    this.#server.subscribe(topic, handler, options);
    return this;
  }

  /**
   * Connects the broker and makes every registered subscription, each joining
   * its consumer group (failures that may pass are retried within
   * `startTimeoutMs`); rejects, and disconnects, when the connection or any
   * subscription fails, so that a service never runs without one of its
   * handlers.
   */
  start(): Promise<void> {
    return this.#server.start();
  }

  /**
   * Disconnects the broker: every subscription stops taking messages, running
   * handlers finish within `drainTimeoutMs`, what finished is committed and the
   * consumers leave their groups. Rejects with a DrainTimeoutError when handlers
   * were still running at the time limit; their messages stay uncommitted, for
   * the next member of the group.
   */
  stop(): Promise<void> {
    return this.#server.stop();
  }
}
