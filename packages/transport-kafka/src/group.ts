import type { Settleable } from '@ktransport/broker/transport';
import type { Admin, Consumer } from 'kafkajs';
import type { CommitTracker, Joined } from './commits.js';
import { describe, isStartRetriable } from './errors.js';
import { type BatchIntake, HOLD } from './intake.js';
import { nextOffset } from './record.js';

export interface MembershipOptions {
  /** Connected admin client of the broker, shared. */
  readonly admin: Admin;
  readonly topic: string;
  readonly groupId: string;
  readonly fromBeginning: boolean;
  readonly allowAutoTopicCreation: boolean;
  readonly intake: BatchIntake;
  readonly tracker: CommitTracker;
  /** The subscription's consumer now; a join of another one is stale. */
  readonly consumer: () => Consumer | undefined;
  /** The subscription is stopping: joins still give partitions up, but set nothing up. */
  readonly stopping: () => boolean;
  /** Resolved once the first join's partitions know where to start (what `subscribe` waits for). */
  readonly ready: Settleable;
  /** A failure while setting starting offsets, kept for the error `start` gives up with. */
  readonly failed: (error: unknown) => void;
  /** Runs `fn` after `ms` unless the subscription stopped. */
  readonly later: (ms: number, fn: () => void) => void;
  readonly warn: (message: string) => void;
}

/**
 * This member's part of the group, from kafkajs' `GROUP_JOIN` events (kafkajs
 * has no revoke callback: the assignment of each join is compared with the
 * last). Partitions taken away give their queued records back to the group
 * (`revoke`: nacked, never committed) and their running handlers' outcomes are
 * ignored. Partitions kept under the same member id go on where the engine is:
 * kafkajs is sought past the last record pushed, so nothing is fetched twice.
 * Under a new member id (a consumer started again, or dropped by the group and
 * rejoined) another member may have had them meanwhile: they are paused until
 * the group's committed offset is compared with what the engine holds. New
 * partitions without a committed offset start at the end of the log (the
 * beginning with `fromBeginning`), committed at once.
 */
export class GroupMembership {
  readonly #o: MembershipOptions;
  /** Joins counted here, so that work of an older one stops. */
  #generation = 0;
  #joined: Joined | undefined;
  #memberId: string | undefined;
  #assigned = new Set<number>();
  /** Partitions known to have a committed offset in the group. */
  readonly #committed = new Set<number>();

  constructor(options: MembershipOptions) {
    this.#o = options;
  }

  /** The last join, while its consumer is the subscription's: commits go through it. */
  get joined(): Joined | undefined {
    const joined = this.#joined;
    return joined !== undefined && joined.consumer === this.#o.consumer() ? joined : undefined;
  }

  /** Whether `consumer` is the one that joined last and owns `partition`, and the subscription runs. */
  takes(consumer: Consumer, partition: number): boolean {
    return this.#joined?.consumer === consumer && this.#assigned.has(partition) && !this.#o.stopping();
  }

  /** The consumer went away (crashed, replaced, stopped): nothing goes through it any more. */
  left(consumer: Consumer | undefined): void {
    if (this.#joined?.consumer === consumer) this.#joined = undefined;
  }

  /** kafkajs' GROUP_JOIN: runs inside its join, before any fetch of the new generation. */
  onJoin(consumer: Consumer, memberId: string, assignment: Record<string, number[] | undefined>): void {
    if (consumer !== this.#o.consumer()) return;
    const { intake, tracker, topic } = this.#o;
    const generation = ++this.#generation;
    const assigned = new Set(assignment[topic] ?? []);
    const sameMember = memberId === this.#memberId;
    this.#memberId = memberId;
    this.#assigned = assigned;
    this.#joined = { consumer, generation };
    const lost = new Set<string>();
    for (const track of [...tracker.partitions()]) {
      if (assigned.has(track.partition)) continue;
      tracker.drop(track.partition);
      lost.add(track.key);
    }
    // Queued records of partitions taken away go back to the group; running ones finish unheard.
    if (lost.size > 0) intake.engine.revoke((key) => key !== undefined && lost.has(key));
    intake.joined(consumer);
    if (this.#o.stopping()) return;
    const unknown: number[] = [];
    const checking: number[] = [];
    for (const partition of assigned) {
      const track = tracker.get(partition);
      if (track === undefined) {
        if (!this.#committed.has(partition)) unknown.push(partition);
      } else if (sameMember && !track.checking) {
        this.#seekPast(consumer, partition, track.lastPushed);
      } else {
        track.checking = true;
        checking.push(partition);
      }
    }
    if (unknown.length === 0 && checking.length === 0) {
      this.#o.ready.resolve();
      tracker.joined();
      return;
    }
    for (const partition of [...unknown, ...checking]) intake.hold(consumer, partition, HOLD.init);
    void this.#prepare(consumer, generation, unknown, checking, 1);
    // Kept partitions commit in the new generation at once; the held ones once checked.
    tracker.joined();
  }

  /**
   * Sets where the partitions of a join start: those without a committed offset
   * at the end of the log as of now (or its beginning), committed at once, so
   * that a message published after `subscribe` resolved is never skipped; those
   * the engine holds records of, where the engine is if the group's offset
   * agrees with it, else where the group is (what the engine holds of them is
   * given back). Retried with a backoff while the join is current.
   */
  async #prepare(consumer: Consumer, generation: number, unknown: number[], checking: number[], attempt: number): Promise<void> {
    const { admin, topic, groupId, fromBeginning, intake, tracker } = this.#o;
    const current = (): boolean => consumer === this.#o.consumer() && generation === this.#generation && !this.#o.stopping();
    try {
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
      if (!current()) return;
      const offsetOf = (partition: number): string | undefined => {
        const offset = committed?.partitions.find((c) => c.partition === partition)?.offset;
        return offset !== undefined && Number(offset) >= 0 ? offset : undefined;
      };
      for (const partition of checking) {
        const track = tracker.get(partition);
        if (track === undefined || !track.checking) continue;
        const offset = offsetOf(partition);
        if (offset !== undefined && track.agrees(offset)) {
          track.checking = false;
          // What the group has may be short of what this member committed last (a commit the crash cut off).
          track.committed = offset === track.commitPoint ? track.acked : undefined;
          this.#seekPast(consumer, partition, track.lastPushed);
        } else {
          // The group went on without this member: what the engine holds of the partition is stale.
          tracker.drop(partition);
          intake.engine.revoke((key) => key === track.key);
        }
      }
      const missing = unknown.filter((p) => {
        if (offsetOf(p) !== undefined) this.#committed.add(p);
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
      for (const partition of [...unknown, ...checking]) intake.release(consumer, partition, HOLD.init);
      this.#o.ready.resolve();
      tracker.joined();
    } catch (error) {
      if (!current()) return;
      // While starting, startTimeoutMs bounds the retries.
      this.#o.failed(error);
      if (!this.#o.ready.settled && !isStartRetriable(error, this.#o.allowAutoTopicCreation)) {
        this.#o.ready.reject(error);
        return;
      }
      this.#o.warn(`setting the starting offsets of ${topic} for group ${groupId} failed: ${describe(error)}; retrying`);
      this.#o.later(Math.min(100 * 2 ** attempt, 5_000), () => {
        if (current()) void this.#prepare(consumer, generation, unknown, checking, attempt + 1);
      });
    }
  }

  /** The next fetch of `partition` starts after the last record the engine took. */
  #seekPast(consumer: Consumer, partition: number, lastPushed: string): void {
    try {
      consumer.seek({ topic: this.#o.topic, partition, offset: nextOffset(lastPushed) });
    } catch {
      // not running: the next consumer's join seeks again
    }
  }
}
