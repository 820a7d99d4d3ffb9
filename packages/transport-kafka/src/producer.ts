import { ConnectionError, InFlight, PublishError } from '@ktransport/broker';
import kafkajs, { type Message as KafkaRecord, type Producer } from 'kafkajs';
import type { createKafka } from './client.js';
import { toPublishError } from './errors.js';
import type { ResolvedOptions } from './options.js';

const { CompressionTypes, Partitioners } = kafkajs;

interface Pending {
  readonly record: KafkaRecord;
  readonly size: number;
  readonly queuedAt: number;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

interface TopicQueue {
  pending: Pending[];
  /** Sum of the sizes of `pending`. */
  bytes: number;
  inFlight: boolean;
  /** A flush is scheduled (setImmediate without linger, else a timer). */
  scheduled: boolean;
  timer: NodeJS.Timeout | undefined;
}

/**
 * The producer side of a KafkaBroker. Publishes to one topic accumulate while a
 * request to that topic is in flight (and for `lingerMs`), then go out as one
 * request; each publish resolves only when the brokers acknowledged its batch.
 * Without linger an idle topic sends at the end of the current turn of the event
 * loop (publishes issued together share the request), and a topic whose request
 * returned sends what accumulated at once: no timer sits on the hot path.
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
    if (!queue) this.#queues.set(topic, (queue = { pending: [], bytes: 0, inFlight: false, scheduled: false, timer: undefined }));
    const target = queue;
    return new Promise<void>((resolve, reject) => {
      target.pending.push({ record, size, queuedAt: this.#options.producer.lingerMs > 0 ? Date.now() : 0, resolve, reject });
      target.bytes += size;
      this.#schedule(topic, target);
    });
  }

  /** Sends what is queued (without lingering), waits for every request, then disconnects. */
  async close(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    while (this.#sending.size > 0 || [...this.#queues.values()].some((q) => q.pending.length > 0)) {
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
    if (queue.inFlight || queue.scheduled || queue.pending.length === 0) return;
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
    const wait = Math.max(0, queue.pending[0]!.queuedAt + lingerMs - Date.now());
    queue.timer = setTimeout(() => this.#flush(topic, queue), wait);
  }

  #full(queue: TopicQueue): boolean {
    const { maxBatchMessages, maxBatchBytes } = this.#options.producer;
    return queue.pending.length >= maxBatchMessages || queue.bytes >= maxBatchBytes;
  }

  #flush(topic: string, queue: TopicQueue): void {
    if (queue.timer !== undefined) clearTimeout(queue.timer);
    queue.timer = undefined;
    queue.scheduled = false;
    if (queue.inFlight || queue.pending.length === 0) return;
    const batch = this.#take(queue);
    queue.inFlight = true;
    void this.#sending.track(this.#sendBatch(topic, batch)).finally(() => {
      queue.inFlight = false;
      if (queue.pending.length === 0) {
        if (!queue.scheduled) this.#queues.delete(topic);
      } else if (this.#options.producer.lingerMs === 0 || this.#full(queue)) {
        // What accumulated during the request waited long enough: send it now.
        this.#flush(topic, queue);
      } else {
        this.#schedule(topic, queue);
      }
    });
  }

  /** The oldest records, within the message and byte limits (at least one). */
  #take(queue: TopicQueue): Pending[] {
    const { maxBatchMessages, maxBatchBytes } = this.#options.producer;
    const { pending } = queue;
    if (pending.length <= maxBatchMessages && queue.bytes <= maxBatchBytes) {
      queue.pending = [];
      queue.bytes = 0;
      return pending;
    }
    let count = 0;
    let bytes = 0;
    for (const p of pending) {
      if (count > 0 && (count >= maxBatchMessages || bytes + p.size > maxBatchBytes)) break;
      count++;
      bytes += p.size;
    }
    queue.bytes -= bytes;
    return pending.splice(0, count);
  }

  async #sendBatch(topic: string, batch: Pending[]): Promise<void> {
    const { acks, compression } = this.#options.producer;
    let used: Promise<Producer> | undefined;
    let producer: Producer | undefined;
    try {
      used = this.#ready();
      producer = await used;
      this.#users.set(producer, (this.#users.get(producer) ?? 0) + 1);
      const messages = new Array<KafkaRecord>(batch.length);
      for (let i = 0; i < batch.length; i++) messages[i] = batch[i]!.record;
      const result = await producer.send({
        topic,
        messages,
        acks,
        compression: compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
      });
      this.#onHealth(true);
      // kafkajs silently skips records for a partition the topic does not have.
      let acked: Set<number> | undefined;
      for (const p of batch) {
        const partition = p.record.partition;
        if (acks !== 0 && partition !== undefined && !(acked ??= new Set(result.map((r) => r.partition))).has(partition)) {
          p.reject(new PublishError(topic, `publish to ${topic} failed: partition ${partition} does not exist`, { retriable: false }));
        } else {
          p.resolve();
        }
      }
    } catch (error) {
      const mapped = toPublishError(topic, error, this.#options.brokers);
      if (mapped.retriable) this.#onHealth(false);
      if (used) this.#replace(used);
      for (const p of batch) p.reject(mapped);
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
