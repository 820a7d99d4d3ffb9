import type { Consumer, RawMessage } from '@ktransport/broker';
import { InFlight } from '@ktransport/broker';
import type { Incoming } from './acks.js';
import type { QoS } from './options.js';
import type { Route } from './routes.js';

/** What members need from their broker. */
export interface MemberHost {
  /** Aborted when draining ran out of time. */
  readonly signal: AbortSignal;
  /** False once the broker stopped starting handlers (draining or closed). */
  readonly open: boolean;
  /** Counts a delivery in flight for the broker's drain, until the matching `leave()`. */
  enter(): void;
  leave(): void;
  /** Runs `again` after the redelivery delay, or `abandon` if the broker starts closing first. */
  later(again: () => void, abandon: () => void): void;
}

interface Delivery {
  readonly message: RawMessage;
  readonly key: string | undefined;
  /** Acknowledged once all its deliveries settled as handled. */
  readonly incoming: Incoming;
}

/**
 * One `subscribe()` call: a queue handled by at most `concurrency` handlers at
 * once, never two with the same key at once (so per-key order holds), with
 * failed deliveries handed back after the redelivery delay, unacknowledged
 * until they succeed.
 */
export class Member {
  active = true;
  readonly inFlight = new InFlight();
  readonly #queue: Delivery[] = [];
  readonly #busyKeys = new Set<string>();
  #running = 0;

  constructor(
    readonly consumer: Consumer,
    readonly concurrency: number,
    readonly qos: QoS,
    readonly route: Route,
    readonly host: MemberHost,
  ) {}

  /** Takes a message for this member; it is tracked until handled or abandoned. */
  accept(message: RawMessage, incoming: Incoming): void {
    incoming.hold();
    this.host.enter();
    this.inFlight.enter();
    this.#queue.push({ message, key: message.key, incoming });
    this.pump();
  }

  /** Ends a delivery: `handled` true acknowledges (with the other deliveries of its packet). */
  #settle(delivery: Delivery, handled: boolean): void {
    delivery.incoming.release(handled);
    this.inFlight.leave();
    this.host.leave();
  }

  /** Starts queued deliveries while slots are free; keys already running wait their turn. */
  pump(): void {
    for (let i = 0; this.#running < this.concurrency && this.host.open;) {
      const delivery = this.#queue[i];
      if (delivery === undefined) break;
      if (delivery.key !== undefined && this.#busyKeys.has(delivery.key)) {
        i++;
        continue;
      }
      if (i === 0) this.#queue.shift();
      else this.#queue.splice(i, 1);
      this.#start(delivery);
    }
  }

  /** Gives up every queued delivery, unacknowledged (shutdown); returns how many there were. */
  abandon(): number {
    const queued = this.#queue.splice(0);
    for (const delivery of queued) this.#settle(delivery, false);
    return queued.length;
  }

  #start(delivery: Delivery): void {
    this.#running++;
    if (delivery.key !== undefined) this.#busyKeys.add(delivery.key);
    this.consumer(delivery.message, this.host.signal).then(
      () => {
        this.#running--;
        this.#release(delivery);
        this.#settle(delivery, true);
        this.pump();
      },
      () => {
        this.#running--;
        // The key stays busy until the message is handled: later messages of that key wait.
        this.host.later(
          () => {
            this.#release(delivery);
            this.#queue.unshift(delivery);
            this.pump();
          },
          () => {
            this.#release(delivery);
            this.#settle(delivery, false);
          },
        );
        this.pump();
      },
    );
  }

  #release(delivery: Delivery): void {
    if (delivery.key !== undefined) this.#busyKeys.delete(delivery.key);
  }
}
