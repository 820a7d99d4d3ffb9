import type { Message as KafkaRecord, Producer, RecordMetadata } from 'kafkajs';

/**
 * Records of at least this many bytes settle apart from their batch-mates. A
 * topic may refuse a record as too large (`max.message.bytes`), and then the
 * others of its request must still get their own outcome; small records, the
 * common case, share one promise per request instead of costing one each.
 */
export const SHARED_MAX_BYTES = 16 * 1024;

/** A publish whose outcome is its own: a large record, or one that names a partition (checked against the acknowledgement). */
export interface Owned {
  readonly record: KafkaRecord;
  readonly partition: number | undefined;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
  done: boolean;
}

/**
 * Where a batch is: waiting in its topic's queue, waiting for a producer
 * connection (nothing sent yet), with a request on its way to the brokers, or
 * settled (every publish in it has its outcome).
 */
export type BatchState = 'queued' | 'connecting' | 'sending' | 'settled';

/**
 * One future request: records in publish order within the message and byte
 * limits. Its small publishes share one promise, settled by the request's
 * outcome; large ones and those that name a partition are `owned`.
 */
export interface Batch {
  readonly records: KafkaRecord[];
  bytes: number;
  readonly createdAt: number;
  /** When its publishes must have settled (`publishTimeoutMs` after the batch was made). */
  readonly deadline: number;
  state: BatchState;
  /** A request carrying (some of) its records was handed to kafkajs: they may have been written. */
  reached: boolean;
  /** The producer of its current request, replaced when that request is given up on. */
  producer: Promise<Producer> | undefined;
  shared: Promise<void> | undefined;
  resolveShared: () => void;
  rejectShared: (error: unknown) => void;
  owned: Owned[] | undefined;
}

const nothing = (): void => undefined;

/** Whether every publish of the batch has its outcome (a function: the state changes while requests are awaited). */
export function isSettled(batch: Batch): boolean {
  return batch.state === 'settled';
}

export function newBatch(createdAt: number, timeoutMs: number): Batch {
  return {
    records: [],
    bytes: 0,
    createdAt,
    deadline: createdAt + timeoutMs,
    state: 'queued',
    reached: false,
    producer: undefined,
    shared: undefined,
    resolveShared: nothing,
    rejectShared: nothing,
    owned: undefined,
  };
}

/** Adds a record; returns the promise its publish waits on. */
export function addRecord(batch: Batch, record: KafkaRecord, size: number, own: boolean): Promise<void> {
  batch.records.push(record);
  batch.bytes += size;
  if (!own) {
    return (batch.shared ??= new Promise<void>((resolve, reject) => {
      batch.resolveShared = resolve;
      batch.rejectShared = reject;
    }));
  }
  return new Promise<void>((resolve, reject) => {
    (batch.owned ??= []).push({ record, partition: record.partition, resolve, reject, done: false });
  });
}

/**
 * Settles every publish still open in the batch with success. An owned record
 * that named a partition the acknowledgement does not list was skipped by
 * kafkajs (the topic has no such partition): it gets `missing(partition)`.
 */
export function resolveBatch(batch: Batch, result: RecordMetadata[], checkPartitions: boolean, missing: (partition: number) => unknown): void {
  batch.state = 'settled';
  batch.resolveShared();
  if (!batch.owned) return;
  const acked = checkPartitions ? new Set(result.map((r) => r.partition)) : undefined;
  for (const owned of batch.owned) settleOwned(owned, acked, missing);
}

/** Settles one owned publish after its request succeeded (see resolveBatch). */
export function settleOwned(owned: Owned, acked: Set<number> | undefined, missing: (partition: number) => unknown): void {
  if (owned.done) return;
  owned.done = true;
  if (acked && owned.partition !== undefined && !acked.has(owned.partition)) owned.reject(missing(owned.partition));
  else owned.resolve();
}

/** Rejects every publish still open in the batch. */
export function rejectBatch(batch: Batch, error: unknown): void {
  batch.state = 'settled';
  batch.rejectShared(error);
  for (const owned of batch.owned ?? []) {
    if (owned.done) continue;
    owned.done = true;
    owned.reject(error);
  }
}

/** Bytes of a record as `recordSize` counts them, for records already built (the slow path of a refused request). */
export function kafkaRecordSize(record: KafkaRecord): number {
  let size = 24 + byteLength(record.value) + byteLength(record.key);
  const headers = record.headers ?? {};
  for (const name in headers) {
    const value = headers[name];
    size += Buffer.byteLength(name) + 4 + (Array.isArray(value) ? value.reduce((sum: number, v) => sum + byteLength(v), 0) : byteLength(value));
  }
  return size;
}

function byteLength(value: Buffer | string | null | undefined): number {
  if (value === null || value === undefined) return 0;
  return typeof value === 'string' ? Buffer.byteLength(value) : value.byteLength;
}
