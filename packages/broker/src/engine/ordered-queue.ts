import { Fifo } from '../memory/fifo.js';
import type { Delivery } from './delivery.js';

/** The deliveries of one ordering key: handled one at a time, in order. */
class Lane {
  readonly waiting = new Fifo<Delivery>();
  /** A failed delivery waiting to run again: it goes before the rest of its lane. */
  again: Delivery | undefined;
  /** A delivery of this lane is running or waiting for redelivery. */
  busy = false;
  /** The lane is in the ready list. */
  listed = false;
}

/**
 * The queue of one subscription: keyless deliveries in arrival order, and one
 * lane per ordering key, of which at most one delivery is out at a time. `next()`
 * hands out work in arrival order among what may run, so a busy key never holds
 * up another key. Every operation is O(1).
 */
export class OrderedQueue {
  readonly #lanes = new Map<string, Lane>();
  /** What may run next: keyless deliveries and lanes with work and nothing out. */
  readonly #ready = new Fifo<Delivery | Lane>();
  /** Keyless deliveries that failed and run again before newer ones. */
  readonly #again = new Fifo<Delivery>();
  #size = 0;

  /** Deliveries waiting to run (failed ones handed back with `retry` included). */
  get size(): number {
    return this.#size;
  }

  /** Deliveries waiting under one key. */
  sizeOf(key: string): number {
    return this.#lanes.get(key)?.waiting.length ?? 0;
  }

  push(delivery: Delivery): void {
    this.#size++;
    const key = delivery.orderingKey;
    if (key === undefined) {
      this.#ready.push(delivery);
      return;
    }
    let lane = this.#lanes.get(key);
    if (!lane) this.#lanes.set(key, (lane = new Lane()));
    lane.waiting.push(delivery);
    this.#list(lane);
  }

  /**
   * Takes `delivery` to run at once, past the queue, when nothing waits and its
   * key is not busy (it is then busy until `done`); false otherwise.
   */
  takeIfIdle(delivery: Delivery): boolean {
    if (this.#size > 0) return false;
    const key = delivery.orderingKey;
    if (key === undefined) return true;
    if (this.#lanes.has(key)) return false;
    const lane = new Lane();
    lane.busy = true;
    this.#lanes.set(key, lane);
    return true;
  }

  /** The next delivery that may run, now taken out (its key is busy until `done`); undefined when none may. */
  next(): Delivery | undefined {
    if (this.#size === 0) return undefined;
    const again = this.#again.shift();
    if (again) {
      this.#size--;
      return again;
    }
    for (;;) {
      const entry = this.#ready.shift();
      if (entry === undefined) return undefined;
      if (!(entry instanceof Lane)) {
        this.#size--;
        return entry;
      }
      entry.listed = false;
      if (entry.busy) continue;
      const delivery = entry.again ?? entry.waiting.shift();
      if (delivery === undefined) continue;
      entry.again = undefined;
      entry.busy = true;
      this.#size--;
      return delivery;
    }
  }

  /** The delivery taken by `next` is finished: its key may run the next one. */
  done(delivery: Delivery): void {
    const key = delivery.orderingKey;
    if (key === undefined) return;
    const lane = this.#lanes.get(key);
    if (!lane) return;
    lane.busy = false;
    if (lane.waiting.length === 0 && lane.again === undefined) this.#lanes.delete(key);
    else this.#list(lane);
  }

  /** The delivery taken by `next` failed and runs again before anything newer of its key. */
  retry(delivery: Delivery): void {
    this.#size++;
    const key = delivery.orderingKey;
    const lane = key === undefined ? undefined : this.#lanes.get(key);
    if (!lane) {
      this.#again.push(delivery);
      return;
    }
    lane.busy = false;
    lane.again = delivery;
    this.#list(lane);
  }

  /** Takes out every waiting delivery whose key matches (all of them without a test); running ones stay out. */
  remove(test?: (key: string | undefined) => boolean): Delivery[] {
    const removed: Delivery[] = [];
    const keep = new Fifo<Delivery | Lane>();
    for (let entry = this.#ready.shift(); entry !== undefined; entry = this.#ready.shift()) {
      if (entry instanceof Lane) keep.push(entry);
      else if (test && !test(undefined)) keep.push(entry);
      else removed.push(entry);
    }
    for (let entry = keep.shift(); entry !== undefined; entry = keep.shift()) this.#ready.push(entry);
    for (const [key, lane] of this.#lanes) {
      if (test && !test(key)) continue;
      if (lane.again) removed.push(lane.again);
      lane.again = undefined;
      removed.push(...lane.waiting.drain());
      if (!lane.busy) this.#lanes.delete(key);
    }
    if (!test || test(undefined)) removed.push(...this.#again.drain());
    this.#size -= removed.length;
    return removed;
  }

  #list(lane: Lane): void {
    if (lane.listed || lane.busy) return;
    lane.listed = true;
    this.#ready.push(lane);
  }
}
