import { ConfigurationError, ConnectionError } from '../errors.js';
import type { Consumer } from '../pipeline.js';
import type { Delivery, EngineLoad, FlowControl } from './delivery.js';
import { OrderedQueue } from './ordered-queue.js';
import { StoppingError, type YieldSlot } from './slot.js';

/** What one subscription's engine needs. */
export interface EngineOptions {
  /** The subscription's pipeline: middleware, retry, dead-letter, decoding, validation and the handler. */
  readonly consumer: Consumer;
  /** Handlers running at once. */
  readonly concurrency: number;
  /**
   * Deliveries queued (received, not started) before intake pauses: in all, or
   * per ordering key when the flow control works per key. Intake resumes at half.
   * Needed with `flow`; without it the wire bounds intake and nothing is counted against it.
   */
  readonly maxQueued?: number;
  /** Wait before a delivery whose pipeline failed (retries spent, not dead-lettered) runs again. */
  readonly redeliveryDelayMs: number;
  /** The wire's pause and resume; without it the wire bounds intake itself (MQTT Receive Maximum). */
  readonly flow?: FlowControl;
  /** Told of a delivery whose pipeline failed and that runs again after `redeliveryDelayMs` (for the wire's log). */
  readonly onRedeliver?: (delivery: Delivery, error: unknown) => void;
}

/** What `stop` left behind when its time ran out or it was stopped. */
export interface StopResult {
  /** Handlers still running when the time limit passed (their deliveries are nacked whenever they settle). */
  readonly running: number;
  /** Deliveries queued or waiting for redelivery that were never started and were nacked. */
  readonly queued: number;
}

/**
 * Delivery for one subscription, the same for every transport: a bounded queue,
 * `concurrency` handlers at once, one at a time per ordering key (in order), a
 * failed delivery run again after `redeliveryDelayMs` before anything newer of
 * its key, acknowledgement only after the pipeline succeeded, and a drain that
 * starts nothing queued once it begins. A wire pushes deliveries in; the engine
 * calls exactly one of `ack` and `nack` on each.
 */
export class DeliveryEngine implements EngineLoad {
  // The options as fields of their own, the fields every message touches first (one object
  // layout, few cache lines), and the rarely used collections made on first use: a process
  // may hold ten thousand subscriptions, and each message touches its engine.
  #running = 0;
  readonly #concurrency: number;
  /** Deliveries waiting in #queue (its size, kept here so that an idle engine need not look at its queue). */
  #waiting = 0;
  readonly #queue = new OrderedQueue();
  /** Deliveries back from their backoff, waiting for a free slot; served before anything queued. */
  #slotWaiters: { go(): void; fail(error: Error): void }[] | undefined;
  #phase: 'open' | 'finishing' | 'stopping' = 'open';
  /** A stop ran out of time and aborted #signal (kept here: the signal object is not touched per message). */
  #aborted = false;
  readonly #consumer: Consumer;
  readonly #abort = new AbortController();
  readonly #signal = this.#abort.signal;
  readonly #flow: FlowControl | undefined;
  /** Keys whose intake is paused (`undefined`: the whole subscription). */
  #paused: Set<string | undefined> | undefined;
  /** Waits of `finish` and `stop`: each returns true once it resolved. */
  #waits: Set<() => boolean> | undefined;
  readonly #maxQueued: number;
  readonly #redeliveryDelayMs: number;
  readonly #onRedeliver: EngineOptions['onRedeliver'];
  /** Failed deliveries waiting for their redelivery delay. */
  readonly #later = new Map<NodeJS.Timeout, Delivery>();
  /** Deliveries between attempts (a retry's backoff): they hold no slot, but their key stays busy. */
  #yielded = 0;
  /** Resolves when stop() begins: deliveries in their backoff wake up then (and get no slot). */
  #stopBegun: (() => void) | undefined;
  #stopSignal: Promise<void> | undefined;

  constructor(options: EngineOptions) {
    const { concurrency, maxQueued, redeliveryDelayMs, flow } = options;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new ConfigurationError(`concurrency must be a whole number >= 1, got ${concurrency}`);
    if (flow !== undefined && maxQueued === undefined) throw new ConfigurationError('maxQueued is needed with flow control');
    if (maxQueued !== undefined && (!Number.isInteger(maxQueued) || maxQueued < 1)) {
      throw new ConfigurationError(`maxQueued must be a whole number >= 1, got ${maxQueued}`);
    }
    if (!(redeliveryDelayMs >= 0)) throw new ConfigurationError(`redeliveryDelayMs must be >= 0, got ${redeliveryDelayMs}`);
    this.#consumer = options.consumer;
    this.#concurrency = concurrency;
    this.#maxQueued = maxQueued ?? Infinity;
    this.#redeliveryDelayMs = redeliveryDelayMs;
    this.#flow = flow;
    this.#onRedeliver = options.onRedeliver;
  }

  /** Handlers running now. */
  get running(): number {
    return this.#running;
  }

  /** Deliveries received and not started (failed ones waiting to run again included). */
  get queued(): number {
    return this.#waiting + this.#later.size;
  }

  /** Handlers running or between two attempts of a retry. */
  get #busy(): number {
    return this.#running + this.#yielded;
  }

  /** Aborted when a stop ran out of time: handlers should give up. */
  get signal(): AbortSignal {
    return this.#signal;
  }

  /** Takes a delivery; once `finish` or `stop` began it is nacked at once. */
  push(delivery: Delivery): void {
    if (this.#phase !== 'open') {
      delivery.nack();
      return;
    }
    // The common case, an idle subscription: straight to a handler, past the queue.
    const key = delivery.orderingKey;
    if (
      this.#running < this.#concurrency &&
      this.#slotWaiters === undefined &&
      this.#waiting === 0 &&
      (key === undefined || this.#queue.takeIfIdle(delivery))
    ) {
      this.#start(delivery);
      return;
    }
    this.#queue.push(delivery);
    this.#waiting++;
    this.#pauseIfFull(delivery.orderingKey);
    this.#pump();
  }

  /**
   * Nacks the queued deliveries whose key matches (a Kafka partition taken away
   * by a rebalance); deliveries of those keys that are running finish, and the
   * wire decides what their outcome still means.
   */
  revoke(test: (key: string | undefined) => boolean): number {
    const count = this.#giveUp(test);
    this.#resumeIfDrained();
    return count;
  }

  /**
   * Nacks the deliveries not started whose key matches (all of them without a
   * test): those waiting for redelivery and those queued. Returns how many.
   */
  #giveUp(test?: (key: string | undefined) => boolean): number {
    let count = 0;
    for (const [timer, delivery] of this.#later) {
      if (test && !test(delivery.orderingKey)) continue;
      clearTimeout(timer);
      this.#later.delete(timer);
      this.#queue.done(delivery);
      delivery.nack();
      count++;
    }
    for (const delivery of this.#queue.remove(test)) {
      delivery.nack();
      count++;
    }
    this.#waiting = this.#queue.size;
    return count;
  }

  /** Nothing running, between attempts, queued or waiting for redelivery. */
  get idle(): boolean {
    return this.#busy === 0 && this.queued === 0;
  }

  /**
   * Resolves once the engine is `idle` or `timeoutMs` passed, taking
   * deliveries meanwhile as usual (unlike `finish`): a broker whose handlers
   * publish to its own subscriptions (dead letters, replies) waits with it
   * until they all are idle at once.
   */
  untilIdle(timeoutMs: number): Promise<void> {
    return this.#whenIdle(timeoutMs, () => this.idle);
  }

  /**
   * Unsubscribe: takes nothing new (pushes are nacked), but what was already
   * received still runs, as it was accepted for this subscription. Resolves
   * when everything settled or `timeoutMs` passed; then stops as `stop` does.
   */
  async finish(timeoutMs: number): Promise<StopResult> {
    if (this.#phase === 'open') this.#phase = 'finishing';
    const deadline = Date.now() + timeoutMs;
    await this.#whenIdle(timeoutMs, () => this.idle);
    return this.stop(Math.max(0, deadline - Date.now()));
  }

  /**
   * Drain: from now on nothing queued starts; queued deliveries and those
   * waiting for redelivery are nacked at once (left for the broker to deliver
   * again), running handlers may finish within `timeoutMs` and are then aborted.
   */
  async stop(timeoutMs: number): Promise<StopResult> {
    this.#phase = 'stopping';
    this.#stopBegun?.();
    // Each delivery woken here settles (as not handled) and gives back a slot it is counted in meanwhile.
    for (const waiter of this.#slotWaiters?.splice(0) ?? []) {
      this.#running++;
      waiter.fail(new StoppingError());
    }
    const queued = this.#giveUp();
    // A finish() waiting for the queue to empty may be done now.
    this.#wake();
    await this.#whenIdle(timeoutMs, () => this.#busy === 0);
    const running = this.#busy;
    if (running > 0) {
      this.#aborted = true;
      this.#abort.abort(new ConnectionError(`the subscription stopped after ${timeoutMs} ms of draining`));
    }
    return { running, queued };
  }

  #pump(): void {
    // Deliveries back from a retry's backoff go first: they were started before anything queued.
    const waiters = this.#slotWaiters;
    if (waiters !== undefined) {
      while (this.#running < this.#concurrency && waiters.length > 0) {
        this.#running++;
        waiters.shift()?.go();
      }
      if (waiters.length === 0) this.#slotWaiters = undefined;
    }
    while (this.#running < this.#concurrency && this.#phase !== 'stopping') {
      if (this.#waiting === 0) break;
      const delivery = this.#queue.next();
      if (delivery === undefined) break;
      this.#waiting--;
      this.#start(delivery);
    }
    this.#resumeIfDrained();
  }

  #start(delivery: Delivery): void {
    this.#running++;
    let work: Promise<void>;
    try {
      work = this.#consumer(delivery.message, this.#signal, this.#yieldSlot);
    } catch (error) {
      work = Promise.reject(error);
    }
    work.then(
      () => this.#settled(delivery, true),
      (error: unknown) => this.#settled(delivery, false, error),
    );
  }

  /** A retry's backoff: the slot goes to other work until `wait` ends (or stopping begins), then the delivery waits for one. */
  readonly #yieldSlot: YieldSlot = (wait) => {
    this.#running--;
    this.#yielded++;
    this.#pump();
    this.#stopSignal ??= new Promise<void>((resolve) => (this.#stopBegun = resolve));
    return Promise.race([wait, this.#stopSignal]).then(() => {
      this.#yielded--;
      if (this.#phase === 'stopping') {
        // Counted as running until it settles (as not handled), which gives the slot back.
        this.#running++;
        return Promise.reject(new StoppingError());
      }
      if (this.#running < this.#concurrency) {
        this.#running++;
        return undefined;
      }
      return new Promise<void>((go, fail) => (this.#slotWaiters ??= []).push({ go, fail }));
    });
  };

  #settled(delivery: Delivery, handled: boolean, error?: unknown): void {
    this.#running--;
    if (this.#aborted) {
      // Its drain ran out of time and reported it as not acknowledged: keep to that, whatever the outcome.
      if (delivery.orderingKey !== undefined) this.#queue.done(delivery);
      delivery.nack();
    } else if (handled) {
      if (delivery.orderingKey !== undefined) this.#queue.done(delivery);
      delivery.ack();
    } else if (this.#phase === 'stopping') {
      if (delivery.orderingKey !== undefined) this.#queue.done(delivery);
      delivery.nack();
    } else {
      // Its key stays busy while it waits: nothing newer of that key overtakes it.
      this.#onRedeliver?.(delivery, error);
      const timer = setTimeout(() => {
        this.#later.delete(timer);
        this.#queue.retry(delivery);
        this.#waiting++;
        this.#pump();
      }, this.#redeliveryDelayMs);
      this.#later.set(timer, delivery);
    }
    this.#pump();
    this.#wake();
  }

  #pauseIfFull(key: string | undefined): void {
    const flow = this.#flow;
    if (!flow) return;
    const size = flow.perKey && key !== undefined ? this.#queue.sizeOf(key) : this.#queue.size;
    if (size < this.#maxQueued) return;
    const which = flow.perKey ? key : undefined;
    const paused = (this.#paused ??= new Set());
    if (paused.has(which)) return;
    paused.add(which);
    flow.pause(which);
  }

  #resumeIfDrained(): void {
    const flow = this.#flow;
    const paused = this.#paused;
    if (!flow || paused === undefined || paused.size === 0 || this.#phase === 'stopping') return;
    const low = Math.floor(this.#maxQueued / 2);
    for (const key of paused) {
      const size = flow.perKey && key !== undefined ? this.#queue.sizeOf(key) : this.#queue.size;
      if (size > low) continue;
      paused.delete(key);
      flow.resume(key);
    }
  }

  #whenIdle(timeoutMs: number, idle: () => boolean): Promise<void> {
    if (idle()) return Promise.resolve();
    return new Promise((resolve) => {
      const waits = (this.#waits ??= new Set());
      const check = (): boolean => {
        if (!idle()) return false;
        clearTimeout(timer);
        waits.delete(check);
        resolve();
        return true;
      };
      const timer = setTimeout(() => {
        waits.delete(check);
        resolve();
      }, timeoutMs);
      waits.add(check);
    });
  }

  #wake(): void {
    const waits = this.#waits;
    if (waits !== undefined) for (const check of waits) check();
  }
}
