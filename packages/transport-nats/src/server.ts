import { BrokerServer, type BrokerServerOptions, type Handler, type Server, type SubscribeOptions } from '@ktransport/broker';
import { NatsBroker } from './broker.js';
import type { NatsBrokerOptions, NatsSubscribeOptions } from './options.js';

type Schema = NonNullable<SubscribeOptions['schema']>;
type SchemaOutput<S extends Schema> = NonNullable<S['~standard']['types']>['output'];

/** The core BrokerServer's options (name, default `nats`; container, services, group), with a NATS broker. */
export interface NatsServerOptions extends Omit<BrokerServerOptions, 'broker'> {
  /** The broker to run (share it with publishers through the BROKER token), or options for a new one. */
  broker: NatsBroker | NatsBrokerOptions;
}

/**
 * Runs a NatsBroker for an App: connects on start, applies the `@Subscribe`
 * methods of its services and the subscriptions added before start (one
 * durable consumer per subscription group), and drains on stop. It composes the
 * core BrokerServer.
 */
export class NatsServer implements Server {
  readonly name: string;
  readonly broker: NatsBroker;
  readonly #server: BrokerServer;

  constructor({ broker, name, ...rest }: NatsServerOptions) {
    this.broker = broker instanceof NatsBroker ? broker : new NatsBroker(broker);
    this.#server = new BrokerServer({ ...rest, broker: this.broker, name: name ?? 'nats' });
    this.name = this.#server.name;
  }

  /** Registers every `@Subscribe` method of a service instance. */
  register(service: object): this {
    this.#server.register(service);
    return this;
  }

  /** Adds a subscription whose bodies are validated by `options.schema` and typed by its output; made at start (or at once when running). */
  subscribe<S extends Schema>(topic: string, handler: Handler<SchemaOutput<S>>, options: NatsSubscribeOptions<S> & { schema: S }): this;
  /** Adds a subscription; made at start (or at once when running). One topic may have one handler per group. */
  subscribe<T>(topic: string, handler: Handler<T>, options?: NatsSubscribeOptions): this;
  subscribe(topic: string, handler: Handler<never>, options?: NatsSubscribeOptions): this {
    this.#server.subscribe(topic, handler, options);
    return this;
  }

  /**
   * Connects the broker (binding to or creating its streams) and makes every
   * registered subscription, each with its consumer (failures that may pass
   * are retried within `startTimeoutMs`); rejects, and disconnects, when the
   * connection or any subscription fails, so that a service never runs
   * without one of its handlers.
   */
  start(): Promise<void> {
    return this.#server.start();
  }

  /**
   * Disconnects the broker: every subscription stops taking messages, running
   * handlers finish within `drainTimeoutMs` and are acknowledged, what was not
   * started is given back to the server (`nak`). Rejects with a
   * DrainTimeoutError when handlers were still running at the time limit; their
   * messages stay unacknowledged and come back after `ackWaitMs`.
   */
  stop(): Promise<void> {
    return this.#server.stop();
  }
}
