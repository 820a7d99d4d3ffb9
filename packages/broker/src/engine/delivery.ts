import type { RawMessage } from '../pipeline.js';

/**
 * One received message as a wire hands it to the delivery engine. The engine
 * calls exactly one of `ack` and `nack`, once.
 */
export interface Delivery {
  readonly message: RawMessage;
  /**
   * Deliveries with the same key are handled one at a time, in the order they
   * were pushed; `undefined` means no order to keep. MQTT and memory use the
   * message key, Kafka the partition.
   */
  readonly orderingKey: string | undefined;
  /** Handled (or dead-lettered): acknowledge it to the broker (PUBACK, offset commit, XACK, ack). */
  ack(): void;
  /**
   * Not handled and given up by this process (shutdown, a partition taken away):
   * leave it unacknowledged so that the broker delivers it again (a resumed
   * session, the group's next owner). It must not be acknowledged.
   */
  nack(): void;
}

/**
 * Pausing a wire's intake while the engine's queue is full. With `perKey`, the
 * engine pauses and resumes single ordering keys (Kafka partitions); otherwise
 * `key` is always `undefined` and means the whole subscription.
 */
export interface FlowControl {
  readonly perKey: boolean;
  /** Stop taking deliveries (of this key, with `perKey`): the engine's queue is full. */
  pause(key: string | undefined): void;
  /** Take deliveries again: the queue drained to half its bound. */
  resume(key: string | undefined): void;
}

/** How much work a subscription holds: handlers running, and deliveries queued behind them. */
export interface EngineLoad {
  readonly running: number;
  readonly queued: number;
}
