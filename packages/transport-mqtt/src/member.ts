import { type Consumer, type Delivery, DeliveryEngine, type RawMessage } from '@ktransport/broker/transport';
import type { Incoming } from './acks.js';
import type { QoS } from './options.js';
import type { Route } from './routes.js';

/**
 * One received message handed to one subscription: the core engine settles it
 * once, and its PUBLISH is acknowledged when every delivery made from it was
 * handled (see acks.ts). A nack leaves the PUBLISH unacknowledged, for the
 * broker to send again to a resumed session. One object per delivery, no closures.
 */
class MqttDelivery implements Delivery {
  constructor(
    readonly message: RawMessage,
    readonly incoming: Incoming,
    /** The engine's signal: aborted when a drain ran out of time. */
    readonly stopped: AbortSignal,
  ) {}

  /** MQTT has no record key: the `message-key` user property orders a subscription's deliveries. */
  get orderingKey(): string | undefined {
    return this.message.key;
  }

  /**
   * A handler that was still running when the drain time ran out was aborted;
   * if it resolves afterwards, its message is left for redelivery all the same
   * (as the drain promises), not acknowledged.
   */
  ack(): void {
    this.incoming.release(!this.stopped.aborted);
  }

  nack(): void {
    this.incoming.release(false);
  }
}

/** What a subscription's engine is made with (the core DeliveryEngine's options). */
export interface MemberOptions {
  readonly consumer: Consumer;
  readonly concurrency: number;
  readonly redeliveryDelayMs: number;
}

/**
 * One `subscribe()` call: a member of a route, with the core delivery engine
 * that does all of its delivery (queue, concurrency, per-key order,
 * redelivery, drain). The wire only pushes what the route picked for it.
 */
export class Member {
  active = true;
  readonly engine: DeliveryEngine;

  constructor(
    readonly qos: QoS,
    readonly route: Route,
    options: MemberOptions,
  ) {
    // No flow control: MQTT bounds intake itself (Receive Maximum; see the README), and pausing
    // the socket would also hold back the PUBACKs that handlers' own publishes wait for.
    // maxQueued is therefore never consulted; it is set to MQTT's largest window.
    this.engine = new DeliveryEngine({ ...options, maxQueued: 65_535 });
  }

  /** Hands a message of `incoming` to this member's engine; the PUBLISH waits for its outcome. */
  push(message: RawMessage, incoming: Incoming): void {
    incoming.hold();
    this.engine.push(new MqttDelivery(message, incoming, this.engine.signal));
  }
}
