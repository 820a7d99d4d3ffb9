import { ConnectionError, InFlight, PublishError } from '@ktransport/broker';
import kafkajs, { type Message as KafkaRecord, type Producer } from 'kafkajs';
import type { createKafka } from './client.js';
import { toPublishError } from './errors.js';
import type { ResolvedOptions } from './options.js';

const { CompressionTypes, Partitioners } = kafkajs;

/**
 * One future request: records in publish order within the message and byte
 * limits. Its publishes share one promise, settled by the request's outcome;
 * a record that names a partition has a check of its own, because kafkajs
 * silently skips records for a partition the topic does not have.
 */
interface Batch {
  readonly records: KafkaRecord[];
  bytes: number;
  readonly queuedAt: number;
  settled: Promise<void> | undefined;
  resolve: () => void;
  reject: (error: unknown) => void;
  checks: PartitionCheck[] | undefined;
}

interface PartitionCheck {
  readonly partition: number;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

interface TopicQueue {
  /** Oldest first; publishes go into the last one until it is full. */
  batches: Batch[];
  inFlight: boolean;
  /** A flush is scheduled (setImmediate without linger, else a timer). */
  scheduled: boolean;
  timer: NodeJS.Timeout | undefined;
}

const settledNothing = (): void => undefined;

/**
 * The producer side of a KafkaBroker. Publishes to one topic accumulate while a
 * request to that topic is in flight (and for `lingerMs`), then go out as one
 * request; each publish resolves only when the brokers acknowledged its batch.
 * Without linger an idle topic sends at the end of the current turn of the event
 * loop (publishes issued together share the request), and a topic whose request
 * returned sends what accumulated at once: no timer sits on the hot path.
 * The publishes of one request share one promise, so a publish costs an array
 * slot rather than a promise and a pair of callbacks of its own.
 * After a failed request the idempotent producer is replaced, so that a
 * sequence number the brokers may already have seen is never reused.
 */
export class BatchingProducer {
  readonly #kafka: ReturnType<typeof createKafka>;
  readonly #options: ResolvedOptions;
  readonly #onHealth: (healthy: boolean) => void;
  readonly #queues = new Map<string, TopicQueue>();
  readonly #sending = new InFlight();
  readonly #users = new Map<Producer, number>();
  readonly #retired = new Set<Producer>();
  #current: Promise<Producer> | undefined;
  #open = false;

  constructor(kafka: ReturnType<typeof createKafka>, options: ResolvedOptions, onHealth: (healthy: boolean) => void) {
    this.#kafka = kafka;
    this.#options = options;
    this.#onHealth = onHealth;
  }

  /** Connects the underlying producer; rejects with the kafkajs error (the broker maps it). */
  async connect(): Promise<void> {
    this.#open = true;
    try {
      await this.#ready();
    } catch (error) {
      this.#open = false;
      throw error;
    }
  }

  /** Queues one record; resolves once the brokers acknowledged it (or at once with acks 0). */
  send(topic: string, record: KafkaRecord, size: number): Promise<void> {
    if (!this.#open) return Promise.reject(new ConnectionError(`cannot publish to ${topic}: the Kafka producer is closed`));
    let queue = this.#queues.get(topic);
    if (!queue) this.#queues.set(topic, (queue = { batches: [], inFlight: false, scheduled: false, timer: undefined }));
    const batch = this.#batchFor(queue, size);
    batch.records.push(record);
    batch.bytes += size;
    let settled: Promise<void>;
    if (record.partition === undefined) {
      settled = batch.settled ??= new Promise<void>((resolve, reject) => {
        batch.resolve = resolve;
        batch.reject = reject;
      });
    } else {
      const partition = record.partition;
      settled = new Promise<void>((resolve, reject) => (batch.checks ??= []).push({ partition, resolve, reject }));
    }
    this.#schedule(topic, queue);
    return settled;
  }

  /** The newest batch if the record fits in it (a batch holds at least one record), else a new one. */
  #batchFor(queue: TopicQueue, size: number): Batch {
    const { maxBatchMessages, maxBatchBytes, lingerMs } = this.#options.producer;
    const last = queue.batches[queue.batches.length - 1];
    if (last && last.records.length < maxBatchMessages && last.bytes + size <= maxBatchBytes) return last;
    const batch: Batch = {
      records: [],
      bytes: 0,
      queuedAt: lingerMs > 0 ? Date.now() : 0,
      settled: undefined,
      resolve: settledNothing,
      reject: settledNothing,
      checks: undefined,
    };
    queue.batches.push(batch);
    return batch;
  }

  /** Sends what is queued (without lingering), waits for every request, then disconnects. */
  async close(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    while (this.#sending.size > 0 || [...this.#queues.values()].some((q) => q.batches.length > 0)) {
      for (const [topic, queue] of this.#queues) this.#flush(topic, queue);
      await this.#sending.idle(60_000);
      await new Promise((resolve) => setImmediate(resolve));
    }
    const current = this.#current;
    this.#current = undefined;
    const producers = [...this.#retired];
    this.#retired.clear();
    const last = await current?.catch(() => undefined);
    if (last) producers.push(last);
    await Promise.all(producers.map((p) => p.disconnect().catch(() => undefined)));
  }

  #schedule(topic: string, queue: TopicQueue): void {
    if (queue.inFlight || queue.scheduled) return;
    const first = queue.batches[0];
    if (!first) return;
    if (this.#full(queue)) {
      this.#flush(topic, queue);
      return;
    }
    const { lingerMs } = this.#options.producer;
    queue.scheduled = true;
    if (lingerMs === 0) {
      setImmediate(() => this.#flush(topic, queue));
      return;
    }
    const wait = Math.max(0, first.queuedAt + lingerMs - Date.now());
    queue.timer = setTimeout(() => this.#flush(topic, queue), wait);
  }

  /** The oldest batch can take no more records: a newer one exists or it reached a limit. */
  #full(queue: TopicQueue): boolean {
    const { maxBatchMessages, maxBatchBytes } = this.#options.producer;
    const first = queue.batches[0];
    return queue.batches.length > 1 || (first !== undefined && (first.records.length >= maxBatchMessages || first.bytes >= maxBatchBytes));
  }

  #flush(topic: string, queue: TopicQueue): void {
    if (queue.timer !== undefined) clearTimeout(queue.timer);
    queue.timer = undefined;
    queue.scheduled = false;
    if (queue.inFlight) return;
    const batch = queue.batches.shift();
    if (!batch) return;
    queue.inFlight = true;
    void this.#sending.track(this.#sendBatch(topic, batch)).finally(() => {
      queue.inFlight = false;
      if (queue.batches.length === 0) {
        if (!queue.scheduled) this.#queues.delete(topic);
      } else if (this.#options.producer.lingerMs === 0 || this.#full(queue)) {
        // What accumulated during the request waited long enough: send it now.
        this.#flush(topic, queue);
      } else {
        this.#schedule(topic, queue);
      }
    });
  }

  async #sendBatch(topic: string, batch: Batch): Promise<void> {
    const { acks, compression } = this.#options.producer;
    let used: Promise<Producer> | undefined;
    let producer: Producer | undefined;
    try {
      used = this.#ready();
      producer = await used;
      this.#users.set(producer, (this.#users.get(producer) ?? 0) + 1);
      const result = await producer.send({
        topic,
        messages: batch.records,
        acks,
        compression: compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
      });
      this.#onHealth(true);
      batch.resolve();
      if (batch.checks) {
        // kafkajs silently skips records for a partition the topic does not have.
        const acked = new Set(result.map((r) => r.partition));
        for (const check of batch.checks) {
          if (acks === 0 || acked.has(check.partition)) check.resolve();
          else check.reject(new PublishError(topic, `publish to ${topic} failed: partition ${check.partition} does not exist`, { retriable: false }));
        }
      }
    } catch (error) {
      const mapped = toPublishError(topic, error, this.#options);
      if (mapped.retriable) this.#onHealth(false);
      if (used) this.#replace(used);
      batch.reject(mapped);
      for (const check of batch.checks ?? []) check.reject(mapped);
    } finally {
      if (producer) this.#release(producer);
    }
  }

  #ready(): Promise<Producer> {
    if (!this.#current) {
      const opening = this.#connectNew();
      this.#current = opening;
      opening.catch(() => {
        if (this.#current === opening) this.#current = undefined;
      });
    }
    return this.#current;
  }

  async #connectNew(): Promise<Producer> {
    const { idempotent } = this.#options.producer;
    const producer = this.#kafka.producer({
      idempotent,
      ...(idempotent ? { maxInFlightRequests: 1 } : {}),
      allowAutoTopicCreation: this.#options.allowAutoTopicCreation,
      retry: this.#options.retry,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    try {
      await producer.connect();
    } catch (error) {
      await producer.disconnect().catch(() => undefined);
      throw error;
    }
    return producer;
  }

  /** After a failed request: new sends get a fresh producer (new id and sequences); the old one closes when idle. */
  #replace(failed: Promise<Producer>): void {
    if (this.#current !== failed) return;
    this.#current = undefined;
    failed.then(
      (producer) => {
        this.#retired.add(producer);
        if (!this.#users.get(producer)) this.#retire(producer);
      },
      () => undefined,
    );
  }

  #release(producer: Producer): void {
    const users = (this.#users.get(producer) ?? 1) - 1;
    if (users > 0) this.#users.set(producer, users);
    else {
      this.#users.delete(producer);
      if (this.#retired.has(producer)) this.#retire(producer);
    }
  }

  #retire(producer: Producer): void {
    this.#retired.delete(producer);
    void producer.disconnect().catch(() => undefined);
  }
}
