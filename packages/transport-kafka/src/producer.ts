import { ConnectionError, PublishError, TimeoutError } from '@ktransport/broker';
import { InFlight } from '@ktransport/broker/transport';
import kafkajs, { type Message as KafkaRecord, type Producer, type RecordMetadata } from 'kafkajs';
import { addRecord, type Batch, isSettled, kafkaRecordSize, newBatch, type Owned, rejectBatch, resolveBatch, settleOwned, SHARED_MAX_BYTES } from './batch.js';
import type { createKafka } from './client.js';
import { isTooLarge, toPublishError } from './errors.js';
import type { ResolvedOptions } from './options.js';

const { CompressionTypes, Partitioners } = kafkajs;

interface TopicQueue {
  /** Oldest first; publishes go into the last one until it is full. */
  readonly batches: Batch[];
  /** The batch whose request is on its way (one per topic at a time). */
  sending: Batch | undefined;
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
 * returned sends what accumulated at once: no timer per publish or per batch.
 * The small publishes of one request share one promise.
 *
 * Every publish settles within `publishTimeoutMs`: one timer for the whole
 * producer fires at the oldest deadline. After a failed or abandoned request the
 * idempotent producer is replaced, so that a sequence number the brokers may
 * already have seen is never reused.
 */
export class BatchingProducer {
  readonly #kafka: ReturnType<typeof createKafka>;
  readonly #options: ResolvedOptions;
  readonly #onHealth: (healthy: boolean) => void;
  readonly #queues = new Map<string, TopicQueue>();
  /** Batches not settled yet; `close` waits for them. */
  readonly #pending = new InFlight();
  readonly #users = new Map<Producer, number>();
  readonly #retired = new Set<Producer>();
  /** Per topic, the size from which a record is owned, once the topic refused a smaller one alone as too large. */
  readonly #ownFrom = new Map<string, number>();
  #current: Promise<Producer> | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #open = false;
  /** `close` is sending what is queued: no lingering. */
  #draining = false;

  constructor(kafka: ReturnType<typeof createKafka>, options: ResolvedOptions, onHealth: (healthy: boolean) => void) {
    this.#kafka = kafka;
    this.#options = options;
    this.#onHealth = onHealth;
  }

  /** Connects the underlying producer; rejects with the kafkajs error (the broker maps it). */
  async connect(): Promise<void> {
    this.#open = true;
    this.#draining = false;
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
    if (!queue) this.#queues.set(topic, (queue = { batches: [], sending: undefined, scheduled: false, timer: undefined }));
    const own = record.partition !== undefined || size >= SHARED_MAX_BYTES || (this.#ownFrom.size > 0 && size >= (this.#ownFrom.get(topic) ?? Infinity));
    const settled = addRecord(this.#batchFor(queue, size), record, size, own);
    this.#schedule(topic, queue);
    return settled;
  }

  /** The newest queued batch if the record fits in it (a batch holds at least one record), else a new one. */
  #batchFor(queue: TopicQueue, size: number): Batch {
    const { maxBatchMessages, maxBatchBytes, publishTimeoutMs } = this.#options.producer;
    const last = queue.batches[queue.batches.length - 1];
    if (last && last.records.length < maxBatchMessages && last.bytes + size <= maxBatchBytes) return last;
    const batch = newBatch(Date.now(), publishTimeoutMs);
    queue.batches.push(batch);
    this.#pending.enter();
    // Deadlines grow with creation: an armed watchdog already fires at or before this one.
    this.#watchdog ??= this.#arm(publishTimeoutMs);
    return batch;
  }

  /**
   * Sends what is queued (without lingering), waits until every publish settled
   * (at most `publishTimeoutMs`), then disconnects, which also ends requests that
   * were given up on.
   */
  async close(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    this.#draining = true;
    for (const [topic, queue] of this.#queues) this.#flush(topic, queue);
    await this.#pending.idle(this.#options.producer.publishTimeoutMs + 1_000);
    if (this.#watchdog !== undefined) clearTimeout(this.#watchdog);
    this.#watchdog = undefined;
    const current = this.#current;
    this.#current = undefined;
    const producers = [...this.#retired];
    this.#retired.clear();
    if (current) {
      // A producer still connecting (connect() gave up on it at startTimeoutMs) is closed once it is
      // connected; waiting here would hold disconnect() for kafkajs' whole retry budget.
      const pending = Symbol('pending');
      const settled = await Promise.race([current.catch(() => undefined), new Promise<typeof pending>((resolve) => setImmediate(() => resolve(pending)))]);
      if (settled === pending)
        void current.then(
          (p) => p.disconnect().catch(() => undefined),
          () => undefined,
        );
      else if (settled) producers.push(settled);
    }
    await Promise.all(producers.map((p) => p.disconnect().catch(() => undefined)));
  }

  #schedule(topic: string, queue: TopicQueue): void {
    if (queue.sending || queue.scheduled) return;
    const first = queue.batches[0];
    if (!first) return;
    if (this.#draining || this.#full(queue)) {
      this.#flush(topic, queue);
      return;
    }
    const { lingerMs } = this.#options.producer;
    queue.scheduled = true;
    if (lingerMs === 0) {
      setImmediate(() => this.#flush(topic, queue));
      return;
    }
    const wait = Math.max(0, first.createdAt + lingerMs - Date.now());
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
    if (queue.sending) return;
    const batch = queue.batches.shift();
    if (!batch) {
      if (this.#queues.get(topic) === queue) this.#queues.delete(topic);
      return;
    }
    queue.sending = batch;
    void this.#sendBatch(topic, batch).then(() => this.#sent(topic, queue, batch));
  }

  /** The request of `batch` is over, or was given up on: the topic's next batch may go. */
  #sent(topic: string, queue: TopicQueue, batch: Batch): void {
    if (queue.sending !== batch) return;
    queue.sending = undefined;
    if (queue.batches.length === 0) {
      if (!queue.scheduled && this.#queues.get(topic) === queue) this.#queues.delete(topic);
    } else if (this.#options.producer.lingerMs === 0 || this.#draining || this.#full(queue)) {
      // What accumulated during the request waited long enough: send it now.
      this.#flush(topic, queue);
    } else {
      this.#schedule(topic, queue);
    }
  }

  async #sendBatch(topic: string, batch: Batch): Promise<void> {
    try {
      const result = await this.#request(topic, batch, batch.records);
      // Undefined: dropped before it was sent. Settled: given up on while on its way (TimeoutError).
      if (result === undefined || isSettled(batch)) return;
      this.#onHealth(true);
      resolveBatch(batch, result, this.#options.producer.acks !== 0, (partition) => this.#noPartition(topic, partition));
      this.#pending.leave();
    } catch (error) {
      if (isSettled(batch)) return;
      if (batch.records.length > 1 && isTooLarge(error)) {
        await this.#split(topic, batch);
        return;
      }
      const mapped = toPublishError(topic, error, this.#options);
      if (mapped.retriable) this.#onHealth(false);
      rejectBatch(batch, mapped);
      this.#pending.leave();
    }
  }

  /**
   * Sends `records` of the batch in one request. Resolves with undefined when the
   * batch's deadline passed while it waited for a producer: then nothing was sent.
   */
  async #request(topic: string, batch: Batch, records: KafkaRecord[]): Promise<RecordMetadata[] | undefined> {
    const { acks, compression } = this.#options.producer;
    if (isSettled(batch)) return undefined;
    batch.state = 'connecting';
    const used = this.#ready();
    batch.producer = used;
    let producer: Producer | undefined;
    try {
      const ready = await used;
      if (isSettled(batch)) return undefined;
      producer = ready;
      this.#users.set(producer, (this.#users.get(producer) ?? 0) + 1);
      batch.state = 'sending';
      batch.reached = true;
      return await producer.send({
        topic,
        messages: records,
        acks,
        compression: compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
      });
    } catch (error) {
      this.#replace(used);
      throw error;
    } finally {
      if (producer) this.#release(producer);
    }
  }

  /**
   * The brokers refused a request of several records as too large. Its records
   * go again in publish order: each owned one alone, so that only a record the
   * topic cannot take is refused (for good), and the shared ones together, halved
   * while the brokers still refuse them. Records of other partitions in the
   * refused request may have been written by it: sent again, they may be written
   * twice (at-least-once).
   */
  async #split(topic: string, batch: Batch): Promise<void> {
    const owners = new Map<KafkaRecord, Owned>((batch.owned ?? []).map((o) => [o.record, o]));
    const shared = { written: 0, refused: [] as KafkaRecord[], error: undefined as unknown };
    let run: KafkaRecord[] = [];
    for (const record of [...batch.records, undefined]) {
      const owner = record === undefined ? undefined : owners.get(record);
      if (record !== undefined && !owner) {
        run.push(record);
        continue;
      }
      if (run.length > 0) await this.#sendShared(topic, batch, run, shared);
      run = [];
      if (owner && !isSettled(batch)) await this.#sendOwned(topic, batch, owner);
    }
    if (isSettled(batch)) return;
    batch.state = 'settled';
    this.#pending.leave();
    if (shared.error === undefined && shared.refused.length === 0) {
      batch.resolveShared();
      return;
    }
    const refusedAll = shared.written === 0 && shared.error === undefined;
    if (shared.refused.length > 0) {
      // Next time such a record travels with an outcome of its own.
      const smallest = Math.min(...shared.refused.map(kafkaRecordSize));
      this.#ownFrom.set(topic, Math.min(this.#ownFrom.get(topic) ?? Infinity, smallest));
    }
    if (refusedAll) {
      batch.rejectShared(
        new PublishError(topic, `publish to ${topic} failed: the message is larger than the topic accepts (its max.message.bytes)`, { retriable: false }),
      );
      return;
    }
    batch.rejectShared(
      shared.error !== undefined
        ? toPublishError(topic, shared.error, this.#options)
        : new PublishError(
            topic,
            `publish to ${topic} failed: a message sent with it is larger than the topic accepts; this one may have been written, publish it again`,
            { retriable: true },
          ),
    );
  }

  async #sendOwned(topic: string, batch: Batch, owner: Owned): Promise<void> {
    try {
      const result = await this.#request(topic, batch, [owner.record]);
      if (result === undefined || owner.done) return;
      this.#onHealth(true);
      const acked = this.#options.producer.acks !== 0 ? new Set(result.map((r) => r.partition)) : undefined;
      settleOwned(owner, acked, (partition) => this.#noPartition(topic, partition));
    } catch (error) {
      if (owner.done) return;
      const mapped = toPublishError(topic, error, this.#options);
      if (mapped.retriable) this.#onHealth(false);
      owner.done = true;
      owner.reject(mapped);
    }
  }

  async #sendShared(topic: string, batch: Batch, records: KafkaRecord[], shared: { written: number; refused: KafkaRecord[]; error: unknown }): Promise<void> {
    if (isSettled(batch)) return;
    try {
      const result = await this.#request(topic, batch, records);
      if (result === undefined) return;
      this.#onHealth(true);
      shared.written += records.length;
    } catch (error) {
      if (isSettled(batch)) return;
      if (!isTooLarge(error)) {
        shared.error ??= error;
        return;
      }
      const only = records.length === 1 ? records[0] : undefined;
      if (only !== undefined) {
        shared.refused.push(only);
        return;
      }
      const half = Math.ceil(records.length / 2);
      await this.#sendShared(topic, batch, records.slice(0, half), shared);
      await this.#sendShared(topic, batch, records.slice(half), shared);
    }
  }

  #noPartition(topic: string, partition: number): PublishError {
    // kafkajs silently skips records for a partition the topic does not have.
    return new PublishError(topic, `publish to ${topic} failed: partition ${partition} does not exist`, { retriable: false });
  }

  /**
   * Settles every batch whose deadline passed: one still queued or waiting for a
   * producer connection is dropped (never sent) with a retriable PublishError;
   * one whose request is on its way gets a TimeoutError (it may still be
   * written), its producer is replaced and the topic's next batch goes at once.
   */
  #sweep(): void {
    this.#watchdog = undefined;
    const now = Date.now();
    const { publishTimeoutMs } = this.#options.producer;
    for (const [topic, queue] of [...this.#queues]) {
      for (let first = queue.batches[0]; first !== undefined && first.deadline <= now; first = queue.batches[0]) {
        queue.batches.shift();
        this.#expire(topic, first, publishTimeoutMs);
      }
      const sending = queue.sending;
      if (sending && sending.deadline <= now) {
        if (sending.state === 'sending' && sending.producer) this.#replace(sending.producer);
        this.#expire(topic, sending, publishTimeoutMs);
        this.#sent(topic, queue, sending);
      } else if (!sending && queue.batches.length === 0 && !queue.scheduled) {
        this.#queues.delete(topic);
      }
    }
    let next = Infinity;
    for (const queue of this.#queues.values()) {
      if (queue.sending) next = Math.min(next, queue.sending.deadline);
      if (queue.batches[0]) next = Math.min(next, queue.batches[0].deadline);
    }
    if (next !== Infinity) this.#watchdog = this.#arm(Math.max(0, next - Date.now()));
  }

  /**
   * The watchdog does not hold the process open: a batch not settled yet always
   * has a socket, a kafkajs retry timer or a linger timer that does.
   */
  #arm(ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => this.#sweep(), ms);
    timer.unref();
    return timer;
  }

  #expire(topic: string, batch: Batch, timeoutMs: number): void {
    if (isSettled(batch)) return;
    const error = batch.reached
      ? new TimeoutError(`publish to ${topic} was not acknowledged within ${timeoutMs} ms (publishTimeoutMs); it may still have been written`)
      : new PublishError(topic, `publish to ${topic} was not sent within ${timeoutMs} ms (publishTimeoutMs); it was dropped and will never be sent`, {
          retriable: true,
        });
    this.#onHealth(false);
    rejectBatch(batch, error);
    this.#pending.leave();
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

  /**
   * New sends get a fresh kafkajs producer (its requests in flight finish; it closes
   * when idle): kafkajs asks for the metadata of every topic a producer ever wrote
   * to, and one deleted since fails them all.
   */
  renew(): void {
    if (this.#current) this.#replace(this.#current);
  }

  /** After a failed or abandoned request: new sends get a fresh producer (new id and sequences); the old one closes when idle. */
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
