import { BrokerServer, type BrokerServerOptions, type Handler, type Server, type SubscribeOptions } from '@ktransport/broker';
import { KafkaBroker } from './broker.js';
import type { KafkaBrokerOptions, KafkaSubscribeOptions } from './options.js';

type Schema = NonNullable<SubscribeOptions['schema']>;
type SchemaOutput<S extends Schema> = NonNullable<S['~standard']['types']>['output'];

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

  subscribe<S extends Schema>(topic: string, handler: Handler<SchemaOutput<S>>, options: KafkaSubscribeOptions<S> & { schema: S }): this;
  subscribe<T>(topic: string, handler: Handler<T>, options?: KafkaSubscribeOptions): this;
  subscribe(topic: string, handler: Handler<never>, options?: KafkaSubscribeOptions): this {
    this.#server.subscribe(topic, handler, options);
    return this;
  }

  start(): Promise<void> {
    return this.#server.start();
  }

  stop(): Promise<void> {
    return this.#server.stop();
  }
}
