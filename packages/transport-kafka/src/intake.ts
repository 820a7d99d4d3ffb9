import { type Consumer as PipelineConsumer, type Delivery, DeliveryEngine, type FlowControl, type RawMessage } from '@ktransport/broker/transport';
import type { Batch, Consumer } from 'kafkajs';
import { type CommitTracker, compareOffsets, type PartitionTrack } from './commits.js';
import { toRawMessage } from './record.js';

/**
 * What a batch handler uses of kafkajs' EachBatchPayload. kafkajs makes these
 * functions as closures over the batch (consumer/runner.js), so they are called
 * as plain functions; its typings declare them as methods.
 */
export interface BatchPayload {
  readonly batch: Batch;
  readonly resolveOffset: (offset: string) => void;
  /** A seek of the partition is pending: the batch was fetched from where reading no longer goes on. */
  readonly isStale: () => boolean;
}

/**
 * One record in the engine. The engine calls `ack` or `nack` once, as a method:
 * the outcome lands on the record's partition track without a closure per message.
 */
class KafkaDelivery implements Delivery {
  readonly orderingKey: string;

  constructor(
    readonly message: RawMessage,
    readonly offset: string,
    readonly track: PartitionTrack,
  ) {
    this.orderingKey = track.key;
  }

  ack(): void {
    this.track.ack(this.offset);
  }

  nack(): void {
    this.track.nack(this.offset);
  }
}

/** Why a partition is paused; it is fetched again once no reason is left. */
export const HOLD = {
  /** The engine holds `maxQueuedPerPartition` records of it. */
  flow: 1,
  /** Its starting offset is being set, or the group's offset checked against what the engine holds. */
  init: 2,
} as const;

export interface IntakeOptions {
  readonly topic: string;
  /** The topic as the application named it (before `topicName`), shown to handlers. */
  readonly logicalTopic: string;
  readonly consume: PipelineConsumer;
  readonly concurrency: number;
  readonly maxQueuedPerPartition: number;
  readonly redeliveryDelayMs: number;
  /** Told of a record that failed and is delivered again after `redeliveryDelayMs`. */
  readonly redelivering: (message: RawMessage, error: unknown) => void;
  readonly tracker: CommitTracker;
  /** The subscription's consumer now (undefined between consumers). */
  readonly consumer: () => Consumer | undefined;
  /** Whether records of this partition fetched by this consumer are to be taken: its current join owns it, and the subscription runs. */
  readonly takes: (consumer: Consumer, partition: number) => boolean;
}

const DONE = Promise.resolve();

/**
 * The subscription's intake: kafkajs hands each fetched batch to `eachBatch`,
 * which pushes its records into the delivery engine (ordering key: the
 * partition) and returns at once, so that kafkajs fetches on while handlers run
 * and no partition waits for another. The engine pauses a partition when
 * `maxQueuedPerPartition` of its records wait: the rest of the batch is left
 * unresolved, and kafkajs fetches it again once the engine resumed the partition.
 * A record the engine already holds is never pushed again (a rebalance that kept
 * the partition, a consumer started again after a crash).
 */
export class BatchIntake implements FlowControl {
  readonly perKey = true;
  readonly engine: DeliveryEngine;
  readonly #o: IntakeOptions;
  /** Paused partitions and why (`HOLD` bits). */
  readonly #holds = new Map<number, number>();
  /** The whole topic is paused for good (stop): releasing a hold resumes nothing. */
  #stopped = false;

  constructor(options: IntakeOptions) {
    this.#o = options;
    this.engine = new DeliveryEngine({
      consumer: options.consume,
      concurrency: options.concurrency,
      maxQueued: options.maxQueuedPerPartition,
      redeliveryDelayMs: options.redeliveryDelayMs,
      flow: this,
      onRedeliver: (delivery, error) => options.redelivering(delivery.message, error),
    });
  }

  /** kafkajs' batch handler: pushes the records the engine does not hold yet and resolves the last one taken. */
  eachBatch(consumer: Consumer, payload: BatchPayload): Promise<void> {
    const { batch } = payload;
    const partition = batch.partition;
    // Left unresolved: a consumer being replaced, a partition not owned (yet), paused, or sought since the fetch.
    if (!this.#o.takes(consumer, partition) || this.#holds.has(partition) || payload.isStale()) return DONE;
    const { tracker, logicalTopic } = this.#o;
    let track = tracker.get(partition);
    let last: string | undefined;
    for (const record of batch.messages) {
      const offset = record.offset;
      last = offset;
      if (track !== undefined && compareOffsets(offset, track.lastPushed) <= 0) continue;
      track ??= tracker.add(partition, offset);
      track.lastPushed = offset;
      this.engine.push(new KafkaDelivery(toRawMessage(logicalTopic, partition, record), offset, track));
      // The engine paused the partition (its queue is full): the rest is fetched again after the resume.
      if (this.#holds.has(partition)) break;
    }
    if (last !== undefined) payload.resolveOffset(last);
    return DONE;
  }

  /** FlowControl: the engine's queue of this partition is full. */
  pause(key: string | undefined): void {
    if (key !== undefined) this.hold(this.#o.consumer(), Number(key), HOLD.flow);
  }

  /** FlowControl: the engine's queue of this partition drained to half. */
  resume(key: string | undefined): void {
    if (key !== undefined) this.release(this.#o.consumer(), Number(key), HOLD.flow);
  }

  hold(consumer: Consumer | undefined, partition: number, reason: number): void {
    const before = this.#holds.get(partition) ?? 0;
    this.#holds.set(partition, before | reason);
    if (before === 0) this.#pause(consumer, partition);
  }

  release(consumer: Consumer | undefined, partition: number, reason: number): void {
    const before = this.#holds.get(partition);
    if (before === undefined) return;
    const after = before & ~reason;
    if (after !== 0) {
      this.#holds.set(partition, after);
      return;
    }
    this.#holds.delete(partition);
    if (consumer === undefined || this.#stopped) return;
    try {
      consumer.resume([{ topic: this.#o.topic, partitions: [partition] }]);
    } catch {
      // not running: a new consumer fetches what it is assigned
    }
  }

  /**
   * A join of `consumer`: an earlier join's offset lookups are void (their
   * holds go), and partitions the engine keeps paused stay paused on this
   * consumer too (a new consumer starts with none paused).
   */
  joined(consumer: Consumer): void {
    for (const partition of [...this.#holds.keys()]) this.release(consumer, partition, HOLD.init);
    for (const partition of this.#holds.keys()) this.#pause(consumer, partition);
  }

  /** Stop: nothing more is fetched, whatever holds are released later. */
  pauseAll(consumer: Consumer | undefined): void {
    this.#stopped = true;
    try {
      consumer?.pause([{ topic: this.#o.topic }]);
    } catch {
      // not running: nothing is fetched anyway
    }
  }

  #pause(consumer: Consumer | undefined, partition: number): void {
    try {
      consumer?.pause([{ topic: this.#o.topic, partitions: [partition] }]);
    } catch {
      // not running (stopped or crashed): nothing is fetched anyway; the next consumer's join pauses it
    }
  }
}
