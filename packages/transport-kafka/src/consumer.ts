import { ConnectionError, type Consumer as PipelineConsumer, InFlight, SubscribeError } from '@ktransport/broker';
import kafkajs, { type Admin, type Batch, type Consumer, type Offsets } from 'kafkajs';
import { topicRoundRobin } from './assigner.js';
import { type createKafka, safeLog } from './client.js';
import { describe, isRebalance, isStartRetriable, toSubscribeError } from './errors.js';
import type { ResolvedOptions } from './options.js';
import { nextOffset, toRawMessage } from './record.js';
import { type Outcome, settleable, Waiter } from './wait.js';

const { PartitionAssigners } = kafkajs;

/** Longest stretch of handled messages left uncommitted inside one long batch. */
const COMMIT_INTERVAL_MS = 1_000;
/** Longest a fetch waits for data (the Java client's fetch.max.wait.ms); bounds how late a rebalance is noticed. */
const FETCH_WAIT_MS = 500;

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
  /** False while the broker's health probe cannot reach the cluster: a consumer that gave up then waits for `wake()`. */
  readonly clusterReachable: () => boolean;
}

/**
 * What a batch handler uses of kafkajs' EachBatchPayload. kafkajs makes these
 * functions as closures over the batch (consumer/runner.js), so they are called
 * as plain functions; its typings declare them as methods.
 */
interface BatchPayload {
  readonly batch: Batch;
  readonly resolveOffset: (offset: string) => void;
  readonly heartbeat: () => Promise<void>;
  readonly commitOffsetsIfNecessary: (offsets?: Offsets) => Promise<void>;
  readonly isRunning: () => boolean;
  readonly isStale: () => boolean;
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
  /** When `start` gives up (`startTimeoutMs` after it was called). */
  #deadline = 0;
  /** The last failure while starting, for the error `start` rejects with. */
  #lastError: unknown;
  /** Consumers started in a row that failed or gave up: the backoff before the next one grows with it. */
  #failures = 0;
  /** The next consumer's start, waiting out its backoff (or for `wake()`). */
  #respawnTimer: NodeJS.Timeout | undefined;
  /** A consumer gave up and the next one waits for `wake()` (the cluster was unreachable). */
  #dormant = false;

  constructor(options: GroupSubscriberOptions) {
    this.#o = options;
  }

  /**
   * Joins the group; resolves once this member has its partitions and knows
   * where to start reading them. Failures that may pass (the cluster not
   * reachable yet, a coordinator still loading, a topic being created) are
   * retried with the `retry` backoff until `startTimeoutMs` runs out; then, or at
   * once for a failure that cannot pass, it rejects with the last error.
   */
  async start(): Promise<void> {
    const { startTimeoutMs } = this.#o.options;
    this.#deadline = Date.now() + startTimeoutMs;
    this.#later(startTimeoutMs, () => this.#giveUp(startTimeoutMs));
    void this.#respawn();
    await this.#ready.promise;
  }

  /** The cluster answers again (the health probe): a consumer that gave up starts again now instead of after its backoff. */
  wake(): void {
    if (this.#stopping || (!this.#dormant && this.#respawnTimer === undefined)) return;
    this.#startNext(0);
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
    this.#respawnTimer = undefined;
    this.#ready.reject(new ConnectionError(`subscription to ${this.#o.topic} was closed before it joined its group`));
    // A consumer still connecting is not waited for: #spawn disconnects it once its connect settles.
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
    if (this.#o.ephemeral) {
      const deleting = this.#o.admin.deleteGroups([this.#o.groupId]).catch(() => undefined);
      // A subscription that never joined (start gave up, maybe with the brokers away) does not wait for it.
      if (this.#generation > 0) await deleting;
    }
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
    const current = (): boolean => consumer === this.#consumer && !this.#stopping;
    try {
      await consumer.connect();
      if (current()) await consumer.subscribe({ topic, fromBeginning: this.#o.fromBeginning });
      if (!current()) {
        await consumer.disconnect().catch(() => undefined);
        return;
      }
      // The cluster answers this consumer: it is healthy while it joins (a join may wait for the group, see README).
      if (this.#ready.settled) this.#o.onHealth(true);
      // Resolves once joined; a failed join reaches #crashed instead.
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: this.#o.concurrency,
        eachBatch: (payload) => this.#eachBatch(consumer, payload),
      });
    } catch (error) {
      await consumer.disconnect().catch(() => undefined);
      if (current()) this.#failed(error);
    }
  }

  /**
   * kafkajs crashes a consumer on errors it gave up on (it disconnected it
   * already) and restarts it itself only after its backoff: a restart it
   * scheduled is cancelled, and the next consumer starts here, at once when the
   * health probe sees the cluster again.
   */
  #crashed(consumer: Consumer, error: Error, restart: boolean): void {
    if (restart) setImmediate(() => void consumer.disconnect().catch(() => undefined));
    if (consumer !== this.#consumer || this.#stopping) return;
    if (this.#ready.settled) {
      this.#o.onHealth(false);
      this.#log('warn', `consumer of ${this.#o.topic} (group ${this.#o.groupId}) crashed: ${describe(error)}; restarting`);
    }
    this.#failed(error);
  }

  /** A consumer did not start or gave up: start the next one after a backoff, unless `start` must give up. */
  #failed(error: unknown): void {
    this.#lastError = error;
    this.#failures++;
    if (!this.#ready.settled) {
      if (!isStartRetriable(error, this.#o.options.allowAutoTopicCreation)) {
        this.#ready.reject(error);
        return;
      }
      if (this.#failures > 1) this.#log('warn', `subscribing to ${this.#o.topic} failed: ${describe(error)}; retrying`);
    }
    const { initialRetryTime, maxRetryTime } = this.#o.options.retry;
    const delay = Math.min(initialRetryTime * 2 ** (this.#failures - 1), maxRetryTime);
    if (this.#ready.settled && !this.#o.clusterReachable()) {
      // The probe will call wake() when the cluster answers; trying before that only adds kafkajs backoff.
      this.#dormant = true;
      return;
    }
    this.#startNext(this.#ready.settled ? delay : Math.min(delay, Math.max(0, this.#deadline - Date.now())));
  }

  /** Starts the next consumer after `ms` (0: now), replacing one already scheduled. */
  #startNext(ms: number): void {
    if (this.#respawnTimer !== undefined) {
      clearTimeout(this.#respawnTimer);
      this.#timers.delete(this.#respawnTimer);
      this.#respawnTimer = undefined;
    }
    this.#dormant = false;
    if (this.#stopping) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#respawnTimer === timer) this.#respawnTimer = undefined;
      void this.#respawn();
    }, ms);
    this.#respawnTimer = timer;
    this.#timers.add(timer);
  }

  async #respawn(): Promise<void> {
    if (this.#stopping) return;
    const previous = this.#consumer;
    this.#consumer = undefined;
    await previous?.disconnect().catch(() => undefined);
    if (this.#stopping) return;
    await this.#spawn();
  }

  /** `startTimeoutMs` ran out before the member joined: reject `start` with the last error. */
  #giveUp(timeoutMs: number): void {
    if (this.#ready.settled) return;
    const last = this.#lastError;
    const detail = last === undefined ? 'no answer from the cluster' : toSubscribeError(this.#o.topic, last, this.#o.options).message;
    this.#ready.reject(
      new SubscribeError(this.#o.topic, `cannot subscribe to ${this.#o.topic} within ${timeoutMs} ms (startTimeoutMs): ${detail}`, {
        cause: last,
        retriable: true,
      }),
    );
  }

  /** Runs inside kafkajs' join, before any fetch: pause new partitions until their starting offset is set. */
  #joined(consumer: Consumer, assignment: Record<string, number[] | undefined>): void {
    if (consumer !== this.#consumer || this.#stopping) return;
    const generation = ++this.#generation;
    this.#rebalance = undefined;
    this.#failures = 0;
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
      // While starting, startTimeoutMs bounds the retries.
      this.#lastError = error;
      if (!this.#ready.settled && !isStartRetriable(error, this.#o.options.allowAutoTopicCreation)) {
        this.#ready.reject(error);
        return;
      }
      this.#log('warn', `setting the starting offsets of ${topic} for group ${groupId} failed: ${describe(error)}; retrying`);
      this.#later(Math.min(100 * 2 ** attempt, 5_000), () => {
        if (current()) void this.#init(consumer, generation, partitions, attempt + 1);
      });
    }
  }

  async #eachBatch(consumer: Consumer, payload: BatchPayload): Promise<void> {
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
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- rethrows what kafkajs rejected a heartbeat or commit with, unchanged
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
