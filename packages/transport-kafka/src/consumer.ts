import { ConnectionError, SubscribeError } from '@ktransport/broker';
import { type Consumer as PipelineConsumer, type EngineLoad, settleable, type StopResult } from '@ktransport/broker/transport';
import kafkajs, { type Admin, type Consumer } from 'kafkajs';
import { topicRoundRobin } from './assigner.js';
import { type createKafka, safeLog } from './client.js';
import { CommitTracker } from './commits.js';
import { describe, isStartRetriable, toSubscribeError } from './errors.js';
import { GroupMembership } from './group.js';
import { BatchIntake } from './intake.js';
import type { ResolvedOptions } from './options.js';

const { PartitionAssigners } = kafkajs;

/** Longest a fetch waits for data (the Java client's fetch.max.wait.ms); bounds how late a resumed partition is fetched again. */
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
 * One subscription: one kafkajs consumer in its consumer group, reading one
 * topic, and the core delivery engine that runs its handlers. kafkajs fetches;
 * the intake pushes each fetched record into the engine (ordering key: the
 * partition) and lets kafkajs fetch on, so partitions never wait for each
 * other; the engine runs `concurrency` handlers at once, one per partition at a
 * time, in order, and redelivers a failed record in process; the commit tracker
 * commits the offset after each partition's contiguous handled run. The
 * consumer is replaced when kafkajs gives up on it (a broker restart); the
 * engine, and the records it holds, outlive it.
 */
export class GroupSubscriber implements EngineLoad {
  readonly #o: GroupSubscriberOptions;
  readonly #intake: BatchIntake;
  readonly #tracker: CommitTracker;
  readonly #membership: GroupMembership;
  #consumer: Consumer | undefined;
  /** Set when `stop` began: nothing new is taken, joins set nothing up. */
  #closing = false;
  readonly #timers = new Set<NodeJS.Timeout>();
  #stopping: Promise<StopResult> | undefined;
  readonly #ready = settleable();
  /** Whether a consumer of this subscription ever joined (a generated group that never did is not waited for at stop). */
  #everJoined = false;
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
    const { topic, options: resolved } = options;
    this.#tracker = new CommitTracker({ topic, joined: () => this.#membership.joined, warn: (message) => this.#log('warn', message) });
    this.#intake = new BatchIntake({
      topic,
      logicalTopic: options.logicalTopic,
      consume: options.consume,
      concurrency: options.concurrency,
      maxQueuedPerPartition: resolved.consumer.maxQueuedPerPartition,
      redeliveryDelayMs: resolved.consumer.redeliveryDelayMs,
      redelivering: (message, error) =>
        this.#log('warn', `message ${topic}[${String(message.partition)}]@${String(message.offset)} failed and will be delivered again: ${describe(error)}`),
      tracker: this.#tracker,
      consumer: () => this.#consumer,
      takes: (consumer, partition) => this.#membership.takes(consumer, partition),
    });
    this.#membership = new GroupMembership({
      admin: options.admin,
      topic,
      groupId: options.groupId,
      fromBeginning: options.fromBeginning,
      allowAutoTopicCreation: resolved.allowAutoTopicCreation,
      intake: this.#intake,
      tracker: this.#tracker,
      consumer: () => this.#consumer,
      stopping: () => this.#closing,
      ready: this.#ready,
      failed: (error) => (this.#lastError = error),
      later: (ms, fn) => this.#later(ms, fn),
      warn: (message) => this.#log('warn', message),
    });
  }

  /** Handlers running now. */
  get running(): number {
    return this.#intake.engine.running;
  }

  /** Records received and not started (failed ones waiting to run again included). */
  get queued(): number {
    return this.#intake.engine.queued;
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
    if (this.#closing || (!this.#dormant && this.#respawnTimer === undefined)) return;
    this.#startNext(0);
  }

  /**
   * Drain: nothing more is fetched and nothing queued starts (queued records
   * stay uncommitted for the group), running handlers may finish within
   * `timeoutMs` (then their signal aborts), what finished is committed and the
   * group is left. Resolves with the engine's count of handlers still running
   * and of queued records given back.
   */
  stop(timeoutMs: number): Promise<StopResult> {
    this.#stopping ??= this.#stop(timeoutMs);
    return this.#stopping;
  }

  async #stop(timeoutMs: number): Promise<StopResult> {
    this.#closing = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#respawnTimer = undefined;
    this.#ready.reject(new ConnectionError(`subscription to ${this.#o.topic} was closed before it joined its group`));
    // A consumer still connecting is not waited for: #spawn disconnects it once its connect settles.
    const consumer = this.#consumer;
    this.#intake.pauseAll(consumer);
    const result = await this.#intake.engine.stop(timeoutMs);
    // The group keeps its member (heartbeats go on) until what finished is committed.
    await this.#tracker.flush();
    this.#tracker.close();
    this.#membership.left(consumer);
    this.#consumer = undefined;
    await consumer?.disconnect().catch((error: unknown) => this.#log('warn', `leaving group ${this.#o.groupId} failed: ${describe(error)}`));
    this.#o.onHealth(true);
    if (this.#o.ephemeral) {
      const deleting = this.#o.admin.deleteGroups([this.#o.groupId]).catch(() => undefined);
      // A subscription that never joined (start gave up, maybe with the brokers away) does not wait for it.
      if (this.#everJoined) await deleting;
    }
    return result;
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
    consumer.on(consumer.events.GROUP_JOIN, (event) => this.#joined(consumer, event.payload.memberId, event.payload.memberAssignment));
    // Before kafkajs rejoins: what finished is committed in the generation that owns it (fewer repeats for the next owner).
    consumer.on(consumer.events.REBALANCING, () => {
      if (consumer === this.#consumer) void this.#tracker.commitNow();
    });
    consumer.on(consumer.events.CRASH, (event) => this.#crashed(consumer, event.payload.error, event.payload.restart));
    const current = (): boolean => consumer === this.#consumer && !this.#closing;
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
        // A batch only hands its records to the engine: one at a time is enough, handlers run in the engine.
        eachBatch: (payload) => this.#intake.eachBatch(consumer, payload),
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
    if (consumer !== this.#consumer || this.#closing) return;
    this.#membership.left(consumer);
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
    if (this.#closing) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#respawnTimer === timer) this.#respawnTimer = undefined;
      void this.#respawn();
    }, ms);
    this.#respawnTimer = timer;
    this.#timers.add(timer);
  }

  async #respawn(): Promise<void> {
    if (this.#closing) return;
    const previous = this.#consumer;
    this.#consumer = undefined;
    await previous?.disconnect().catch(() => undefined);
    if (this.#closing) return;
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

  /** kafkajs' GROUP_JOIN of `consumer` (inside its join, before any fetch of the new generation). */
  #joined(consumer: Consumer, memberId: string, assignment: Record<string, number[] | undefined>): void {
    if (consumer !== this.#consumer) return;
    this.#everJoined = true;
    if (!this.#closing) {
      this.#failures = 0;
      this.#o.onHealth(true);
    }
    this.#membership.onJoin(consumer, memberId, assignment);
  }

  #later(ms: number, fn: () => void): void {
    if (this.#closing) return;
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
