import { ConnectionError, type Consumer as PipelineConsumer, InFlight, type RawMessage } from '@ktransport/broker';
import kafkajs, { type Admin, type Consumer, type EachBatchPayload, type KafkaMessage } from 'kafkajs';
import { topicRoundRobin } from './assigner.js';
import { type createKafka, safeLog } from './client.js';
import { describe, isRebalance, isTopicNotReady } from './errors.js';
import { fromKafkaHeaders } from './headers.js';
import type { ResolvedOptions } from './options.js';

const { PartitionAssigners } = kafkajs;

/** Longest stretch of handled messages left uncommitted inside one long batch. */
const COMMIT_INTERVAL_MS = 1_000;
/** Longest a fetch waits for data (the Java client's fetch.max.wait.ms); bounds how late a rebalance is noticed. */
const FETCH_WAIT_MS = 500;
/** Attempts to set a new group's starting offsets before `subscribe` gives up. */
const INIT_ATTEMPTS = 5;

export interface GroupSubscriberOptions {
  readonly kafka: ReturnType<typeof createKafka>;
  /** Connected admin client of the broker, shared. */
  readonly admin: Admin;
  readonly options: ResolvedOptions;
  /** The Kafka topic read. */
  readonly topic: string;
  /** The topic as the application named it (before `topicName`), shown to handlers. */
  readonly logicalTopic: string;
  readonly groupId: string;
  /** A generated group: deleted when the subscription ends. */
  readonly ephemeral: boolean;
  readonly fromBeginning: boolean;
  readonly concurrency: number;
  /** The core pipeline: resolves when the message is done (handled or dead-lettered), rejects to redeliver it. */
  readonly consume: PipelineConsumer;
  readonly onHealth: (healthy: boolean) => void;
}

/** What became of a message's handling: done, or an error that means delivering it again. */
type Outcome = 'ok' | { readonly error: unknown };

/** The offset after `offset` (offsets are decimal strings; exact past 2^53 too). */
function nextOffset(offset: string): string {
  return offset.length < 16 ? String(Number(offset) + 1) : (BigInt(offset) + 1n).toString();
}

/**
 * One subscription: one kafkajs consumer in its own consumer group, reading one
 * topic. Messages of a partition are handled one after another (`concurrency`
 * partitions at once); the offset after a handled message is committed, never
 * past a message that failed: that partition pauses, seeks back to it and
 * delivers it again after `redeliveryDelayMs`.
 */
export class GroupSubscriber {
  readonly #o: GroupSubscriberOptions;
  #consumer: Consumer | undefined;
  #spawning: Promise<void> | undefined;
  /** Bumped on every group join; work of an older generation stops. */
  #generation = 0;
  /** Set when a heartbeat or commit learned that the group rebalances: stop taking messages, commit, rejoin. */
  #rebalance: unknown;
  /** Partitions known to have a committed offset in the group. */
  readonly #committed = new Set<number>();
  /** Why each partition is paused (`init`, `redeliver`); it resumes when no reason is left. */
  readonly #holds = new Map<number, Set<string>>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #inFlight = new InFlight();
  readonly #abort = new AbortController();
  /** One per running partition loop; `stop` hands them 'abandoned' when draining timed out. */
  readonly #waiting = new Set<Waiter>();
  #abandoned = false;
  #stopping: Promise<number> | undefined;
  #ready = settleable();
  /** When kafkajs last sent a heartbeat (it sends one only once `heartbeatIntervalMs` passed since). */
  #lastHeartbeat = 0;

  constructor(options: GroupSubscriberOptions) {
    this.#o = options;
  }

  /** Joins the group; resolves once this member has its partitions and knows where to start reading them. */
  async start(): Promise<void> {
    this.#spawning = this.#spawn();
    await this.#spawning;
    await this.#ready.promise;
  }

  /**
   * Stops taking messages, lets in-flight handlers finish within `timeoutMs`,
   * commits what finished and leaves the group. Resolves with the number of
   * handlers still running when the time ran out (their messages stay uncommitted).
   */
  stop(timeoutMs: number): Promise<number> {
    this.#stopping ??= this.#stop(timeoutMs);
    return this.#stopping;
  }

  async #stop(timeoutMs: number): Promise<number> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#ready.reject(new ConnectionError(`subscription to ${this.#o.topic} was closed before it joined its group`));
    await this.#spawning?.catch(() => undefined);
    const consumer = this.#consumer;
    // kafkajs' stop waits for running batches: our loops stop at the next message and commit.
    const leaving = consumer?.disconnect().catch((error: unknown) => this.#log('warn', `leaving group ${this.#o.groupId} failed: ${describe(error)}`));
    const pending = await this.#inFlight.idle(timeoutMs);
    if (pending > 0) {
      this.#abort.abort(new ConnectionError(`subscription to ${this.#o.topic} closed after ${timeoutMs} ms of draining`));
      this.#abandoned = true;
      for (const waiter of [...this.#waiting]) waiter.wake('abandoned');
    }
    await leaving;
    this.#consumer = undefined;
    this.#o.onHealth(true);
    if (this.#o.ephemeral) await this.#o.admin.deleteGroups([this.#o.groupId]).catch(() => undefined);
    return pending;
  }

  async #spawn(): Promise<void> {
    const { kafka, options, topic, groupId } = this.#o;
    const consumer = kafka.consumer({
      groupId,
      partitionAssigners: [topicRoundRobin, PartitionAssigners.roundRobin],
      sessionTimeout: options.consumer.sessionTimeoutMs,
      heartbeatInterval: options.consumer.heartbeatIntervalMs,
      rebalanceTimeout: options.consumer.rebalanceTimeoutMs,
      maxWaitTimeInMs: FETCH_WAIT_MS,
      retry: options.retry,
      allowAutoTopicCreation: options.allowAutoTopicCreation,
    });
    this.#consumer = consumer;
    this.#holds.clear();
    consumer.on(consumer.events.GROUP_JOIN, (event) => this.#joined(consumer, event.payload.memberAssignment));
    consumer.on(consumer.events.HEARTBEAT, () => (this.#lastHeartbeat = Date.now()));
    consumer.on(consumer.events.CRASH, (event) => this.#crashed(consumer, event.payload.error, event.payload.restart));
    try {
      await consumer.connect();
      await this.#subscribeTopic(consumer, topic);
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: this.#o.concurrency,
        eachBatch: (payload) => this.#eachBatch(consumer, payload),
      });
    } catch (error) {
      this.#ready.reject(error);
      await consumer.disconnect().catch(() => undefined);
      throw error;
    }
  }

  /**
   * kafkajs does not retry `subscribe`: a topic that the brokers create on this
   * very metadata request (auto-creation) would fail it. Retry while it appears.
   */
  async #subscribeTopic(consumer: Consumer, topic: string): Promise<void> {
    const { retries, initialRetryTime, maxRetryTime } = this.#o.options.retry;
    for (let attempt = 0, wait = initialRetryTime; ; attempt++, wait = Math.min(wait * 2, maxRetryTime)) {
      try {
        await consumer.subscribe({ topic, fromBeginning: this.#o.fromBeginning });
        return;
      } catch (error) {
        if (!this.#o.options.allowAutoTopicCreation || !isTopicNotReady(error) || attempt >= retries || this.#stopping) throw error;
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }

  /** kafkajs crashes on errors it gave up on; it restarts by itself only when they were retriable. */
  #crashed(consumer: Consumer, error: Error, restart: boolean): void {
    if (consumer !== this.#consumer || this.#stopping) return;
    this.#o.onHealth(false);
    if (!this.#ready.settled) {
      this.#ready.reject(error);
      // After the listener returns kafkajs schedules its restart; disconnecting then cancels it.
      setImmediate(() => void consumer.disconnect().catch(() => undefined));
      return;
    }
    const delay = this.#o.options.retry.initialRetryTime;
    this.#log('warn', `consumer of ${this.#o.topic} (group ${this.#o.groupId}) crashed: ${describe(error)}; restarting`);
    if (!restart) this.#later(delay, () => void this.#respawn());
  }

  async #respawn(): Promise<void> {
    if (this.#stopping) return;
    await this.#consumer?.disconnect().catch(() => undefined);
    if (this.#stopping) return;
    this.#spawning = this.#spawn().catch((error: unknown) => {
      this.#log('warn', `restarting the consumer of ${this.#o.topic} failed: ${describe(error)}`);
      this.#later(this.#o.options.retry.maxRetryTime, () => void this.#respawn());
    });
    await this.#spawning;
  }

  /** Runs inside kafkajs' join, before any fetch: pause new partitions until their starting offset is set. */
  #joined(consumer: Consumer, assignment: Record<string, number[] | undefined>): void {
    if (consumer !== this.#consumer || this.#stopping) return;
    const generation = ++this.#generation;
    this.#rebalance = undefined;
    this.#o.onHealth(true);
    // An earlier join's offset lookup is void now; its pauses must not outlive it.
    for (const partition of [...this.#holds.keys()]) this.#release(consumer, partition, 'init');
    const unknown = (assignment[this.#o.topic] ?? []).filter((p) => !this.#committed.has(p));
    if (unknown.length === 0) {
      this.#ready.resolve();
      return;
    }
    for (const partition of unknown) this.#hold(consumer, partition, 'init');
    void this.#init(consumer, generation, unknown, 1);
  }

  /**
   * A partition without a committed offset starts at the end of the log (or its
   * beginning with `fromBeginning`) as of now, and that position is committed at
   * once: a message published after `subscribe` resolved is never skipped, even
   * if this member leaves before the first fetch.
   */
  async #init(consumer: Consumer, generation: number, partitions: number[], attempt: number): Promise<void> {
    const { admin, topic, groupId, fromBeginning } = this.#o;
    const current = (): boolean => consumer === this.#consumer && generation === this.#generation && !this.#stopping;
    try {
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const missing = partitions.filter((p) => {
        const offset = committed?.partitions.find((c) => c.partition === p)?.offset;
        if (offset !== undefined && Number(offset) >= 0) this.#committed.add(p);
        return !this.#committed.has(p);
      });
      if (missing.length > 0) {
        const ends = await admin.fetchTopicOffsets(topic);
        const offsets = missing.map((partition) => {
          const end = ends.find((e) => e.partition === partition);
          if (!end) throw new Error(`no offsets for partition ${partition} of ${topic}`);
          return { topic, partition, offset: fromBeginning ? end.low : end.high };
        });
        if (!current()) return;
        await consumer.commitOffsets(offsets);
        if (!current()) return;
        for (const offset of offsets) {
          consumer.seek(offset);
          this.#committed.add(offset.partition);
        }
      }
      if (!current()) return;
      for (const partition of partitions) this.#release(consumer, partition, 'init');
      this.#ready.resolve();
    } catch (error) {
      if (!current()) return;
      if (!this.#ready.settled && attempt >= INIT_ATTEMPTS) {
        this.#ready.reject(error);
        return;
      }
      this.#log('warn', `setting the starting offsets of ${topic} for group ${groupId} failed: ${describe(error)}; retrying`);
      this.#later(Math.min(100 * 2 ** attempt, 5_000), () => {
        if (current()) void this.#init(consumer, generation, partitions, attempt + 1);
      });
    }
  }

  async #eachBatch(consumer: Consumer, payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, isRunning, isStale, commitOffsetsIfNecessary } = payload;
    const { topic, logicalTopic, consume, options } = this.#o;
    const partition = batch.partition;
    const generation = this.#generation;
    const heartbeatIntervalMs = options.consumer.heartbeatIntervalMs;
    /** Offset of the last handled message not committed yet. */
    let handled: string | undefined;
    let lastCommit = Date.now();
    const commit = async (): Promise<void> => {
      if (handled === undefined) return;
      const last = handled;
      handled = undefined;
      lastCommit = Date.now();
      const offset = nextOffset(last);
      try {
        await commitOffsetsIfNecessary({ topics: [{ topic, partitions: [{ partition, offset }] }] });
        this.#committed.add(partition);
      } catch (error) {
        if (isRebalance(error)) this.#rebalance ??= error;
        else this.#log('warn', `commit of ${topic}[${partition}]@${offset} failed: ${describe(error)}; it will be retried`);
        handled ??= last;
      }
    };
    const beat = (): Promise<void> =>
      heartbeat().catch((error: unknown) => {
        if (isRebalance(error)) this.#rebalance ??= error;
      });
    // One timer for the whole batch keeps the member alive while a handler works.
    const timer = setInterval(() => void beat(), heartbeatIntervalMs);
    const waiter = new Waiter(this.#inFlight);
    this.#waiting.add(waiter);
    // A batch fetched before a seek of its partition is stale. The only seeks made while a batch
    // runs are this loop's own redelivery (it stops right after) and a new generation's starting
    // offsets (the generation check stops the loop): asking once per batch is enough.
    const stale = isStale();
    /** Handled in this batch and not yet resolved with kafkajs: resolved once, when the loop ends. */
    let resolvable: string | undefined;
    try {
      for (const message of batch.messages) {
        if (stale || !isRunning() || this.#stopping || this.#rebalance !== undefined || generation !== this.#generation || this.#holds.has(partition)) break;
        const outcome = await this.#settle(waiter, consume(toRawMessage(logicalTopic, partition, message), this.#abort.signal));
        if (outcome === 'abandoned') break;
        if (outcome !== 'ok') {
          this.#log('warn', `message ${topic}[${partition}]@${message.offset} failed and will be delivered again: ${describe(outcome.error)}`);
          await commit();
          // Resolved before the seek, which then decides where the partition is read next.
          if (resolvable !== undefined) resolveOffset(resolvable);
          resolvable = undefined;
          this.#redeliver(consumer, partition, message.offset);
          break;
        }
        resolvable = message.offset;
        handled = message.offset;
        const now = Date.now();
        if (now - lastCommit >= COMMIT_INTERVAL_MS) await commit();
        // kafkajs sends a heartbeat once its interval passed since the last one: ask only then.
        if (now >= this.#lastHeartbeat + heartbeatIntervalMs) await beat();
      }
    } finally {
      clearInterval(timer);
      this.#waiting.delete(waiter);
      // kafkajs fetches again only after the batches of its last fetch returned, each partition from
      // its last resolved offset: resolving the last handled one here is the same as resolving each.
      if (resolvable !== undefined) resolveOffset(resolvable);
    }
    await commit();
    if (handled !== undefined) await commit();
    // Rethrowing the rebalance error makes kafkajs rejoin the group.
    if (this.#rebalance !== undefined && !this.#stopping && generation === this.#generation) throw this.#rebalance;
  }

  /**
   * Counts one handler in flight and waits for its outcome, or for 'abandoned'
   * once `stop` gave up waiting. The loop's waiter carries the callbacks, so a
   * message costs one promise and nothing is left behind.
   */
  #settle(waiter: Waiter, work: Promise<void>): Promise<Outcome | 'abandoned'> {
    if (this.#abandoned) return Promise.resolve('abandoned');
    this.#inFlight.enter();
    return new Promise((resolve) => {
      waiter.resolve = resolve;
      work.then(waiter.ok, waiter.failed);
    });
  }

  /** Seeks back to the failed message and pauses its partition for `redeliveryDelayMs`. */
  #redeliver(consumer: Consumer, partition: number, offset: string): void {
    try {
      consumer.seek({ topic: this.#o.topic, partition, offset });
    } catch {
      // the consumer stopped; the next owner starts from the committed offset
    }
    this.#hold(consumer, partition, 'redeliver');
    this.#later(this.#o.options.consumer.redeliveryDelayMs, () => this.#release(consumer, partition, 'redeliver'));
  }

  #hold(consumer: Consumer, partition: number, reason: string): void {
    let reasons = this.#holds.get(partition);
    if (!reasons) this.#holds.set(partition, (reasons = new Set()));
    reasons.add(reason);
    try {
      consumer.pause([{ topic: this.#o.topic, partitions: [partition] }]);
    } catch {
      // not running (stopped or crashed): nothing is fetched anyway
    }
  }

  #release(consumer: Consumer, partition: number, reason: string): void {
    const reasons = this.#holds.get(partition);
    reasons?.delete(reason);
    if (reasons && reasons.size > 0) return;
    this.#holds.delete(partition);
    if (consumer !== this.#consumer) return;
    try {
      consumer.resume([{ topic: this.#o.topic, partitions: [partition] }]);
    } catch {
      // not running
    }
  }

  #later(ms: number, fn: () => void): void {
    if (this.#stopping) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
  }

  #log(level: 'warn' | 'error', message: string): void {
    const { logger, redact } = this.#o.options;
    safeLog(logger, { level, namespace: 'ktransport', message: redact(message), fields: { topic: this.#o.topic, groupId: this.#o.groupId } });
  }
}

const ignore = (): void => undefined;

/**
 * The callbacks of one partition loop, made once per batch: the handler in hand
 * settles the loop's current wait through them, and `stop` can wake the loop
 * with 'abandoned' while the handler is still running.
 */
class Waiter {
  resolve: (outcome: Outcome | 'abandoned') => void = ignore;
  readonly ok: () => void;
  readonly failed: (error: unknown) => void;

  constructor(inFlight: InFlight) {
    this.ok = () => {
      inFlight.leave();
      this.resolve('ok');
    };
    this.failed = (error) => {
      inFlight.leave();
      this.resolve({ error });
    };
  }

  wake(outcome: 'abandoned'): void {
    this.resolve(outcome);
  }
}

/** A kafkajs record as the core pipeline's raw message: the value bytes exactly as they came. */
function toRawMessage(topic: string, partition: number, message: KafkaMessage): RawMessage {
  const headers = fromKafkaHeaders(message.headers);
  const value = message.value;
  const raw: { -readonly [K in keyof RawMessage]: RawMessage[K] } = {
    topic,
    body: value ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength) : new Uint8Array(0),
    headers,
    partition,
    offset: message.offset,
    timestamp: Number(message.timestamp),
    raw: message,
  };
  if (message.key !== null && message.key !== undefined) raw.key = message.key.toString('utf8');
  const id = headers['message-id'];
  if (id !== undefined) raw.id = id;
  return raw;
}

interface Settleable {
  readonly promise: Promise<void>;
  readonly settled: boolean;
  resolve(): void;
  reject(error: unknown): void;
}

function settleable(): Settleable {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  const state = {
    promise,
    settled: false,
    resolve(): void {
      if (state.settled) return;
      state.settled = true;
      resolve();
    },
    reject(error: unknown): void {
      if (state.settled) return;
      state.settled = true;
      reject(error);
    },
  };
  return state;
}
