import type { BrokerServerOptions, Handler, Server } from '@ktransport/broker';
import { BrokerServer, ConfigurationError } from '@ktransport/broker';
import { AmqpBroker } from './broker.js';
import type { InferOutput, AmqpBrokerOptions, AmqpSubscribeOptions, Schema } from './options.js';

/** The core BrokerServer's options (name, container, services, group), with an AMQP broker. */
export interface AmqpServerOptions extends Omit<BrokerServerOptions, 'broker'> {
  /** A broker to run (for example the one bound to the BROKER token), or options to create one. */
  broker: AmqpBroker | AmqpBrokerOptions;
}

/**
 * The App server for AMQP 0.9.1 (RabbitMQ): the core BrokerServer running an AmqpBroker. Start
 * connects and applies every registered subscription (failing loudly), stop
 * drains in-flight handlers and closes.
 */
export class AmqpServer implements Server {
  readonly broker: AmqpBroker;
  readonly #server: BrokerServer;

  constructor({ broker, ...rest }: AmqpServerOptions) {
    if (!broker) throw new ConfigurationError('AmqpServer needs a broker or broker options');
    this.broker = broker instanceof AmqpBroker ? broker : new AmqpBroker(broker);
    this.#server = new BrokerServer({ ...rest, broker: this.broker });
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
  subscribe<S extends Schema>(topic: string, handler: Handler<InferOutput<S>>, options: AmqpSubscribeOptions<S> & { schema: S }): this;
  subscribe<T>(topic: string, handler: Handler<T>, options?: AmqpSubscribeOptions): this;
  subscribe(topic: string, handler: Handler<never>, options: AmqpSubscribeOptions = {}): this {
    this.#server.subscribe(topic, handler, options);
    return this;
  }

  /**
   * Connects the broker and makes every registered subscription; rejects (and
   * disconnects) when the connection or any subscription fails, so that a
   * service never runs without one of its handlers.
   */
  start(): Promise<void> {
    return this.#server.start();
  }

  /**
   * Disconnects the broker: no message received but not started is started,
   * running handlers finish within `drainTimeoutMs` and what finished is
   * acknowledged; the rest is left unacknowledged, and the broker delivers it
   * again. Rejects with a DrainTimeoutError when handlers were still
   * running at the time limit.
   */
  stop(): Promise<void> {
    return this.#server.stop();
  }
}
