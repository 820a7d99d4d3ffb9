import type { Handler, Server, ServiceResolver } from '@ktransport/broker';
import { BrokerServer, ConfigurationError } from '@ktransport/broker';
import { MqttBroker } from './broker.js';
import type { InferOutput, MqttBrokerOptions, MqttSubscribeOptions, Schema } from './options.js';

export interface MqttServerOptions {
  /** A broker to run (for example the one bound to the BROKER token), or options to create one. */
  broker: MqttBroker | MqttBrokerOptions;
  /** Name shown in App logs and errors. Default `broker:mqtt`. */
  name?: string;
  /** Resolves `services` and registers their `@Subscribe` methods. */
  container?: ServiceResolver;
  /** Service identifiers (classes or tokens) to resolve from `container`. */
  services?: readonly unknown[];
}

/**
 * The App server for MQTT: the core BrokerServer running an MqttBroker. Start
 * connects and applies every registered subscription (failing loudly), stop
 * drains in-flight handlers and closes.
 */
export class MqttServer implements Server {
  readonly broker: MqttBroker;
  readonly #server: BrokerServer;

  constructor(options: MqttServerOptions) {
    if (!options.broker) throw new ConfigurationError('MqttServer needs a broker or broker options');
    this.broker = options.broker instanceof MqttBroker ? options.broker : new MqttBroker(options.broker);
    this.#server = new BrokerServer({
      broker: this.broker,
      ...(options.name === undefined ? {} : { name: options.name }),
      ...(options.container === undefined ? {} : { container: options.container }),
      ...(options.services === undefined ? {} : { services: options.services }),
    });
  }

  get name(): string {
    return this.#server.name;
  }

  /** Registers every `@Subscribe` method of a service instance. */
  register(service: object): this {
    this.#server.register(service);
    return this;
  }

  /** Adds a subscription; applied at start (or at once when running). */
  subscribe<S extends Schema>(topic: string, handler: Handler<InferOutput<S>>, options: MqttSubscribeOptions<S> & { schema: S }): this;
  subscribe<T>(topic: string, handler: Handler<T>, options?: MqttSubscribeOptions): this;
  subscribe(topic: string, handler: Handler<never>, options: MqttSubscribeOptions = {}): this {
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
