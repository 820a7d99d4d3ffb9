import type { Consumer } from 'kafkajs';
import { describe, isRebalance } from './errors.js';
import { nextOffset } from './record.js';

/**
 * Least time between two commits of one subscription. The first ack after a
 * quiet spell is committed at once; under load, the acks of this long share one
 * commit request.
 */
export const COMMIT_GAP_MS = 100;
/** Wait before a failed commit is tried again (sooner when a new join asks for one). */
export const COMMIT_RETRY_MS = 1_000;

/** Orders two Kafka offsets (decimal strings without leading zeros) without parsing them. */
export function compareOffsets(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

/**
 * What this member holds of one partition: the last record handed to the
 * engine (the next fetch starts after it) and how far handling got. The engine
 * runs one delivery of a partition at a time, in push order, so acks arrive in
 * offset order and the last acked offset ends a contiguous handled run: its
 * successor is the offset to commit. A nack (a delivery given back) ends the run
 * for good: nothing at or after it is committed by this track.
 */
export class PartitionTrack {
  /** The engine's ordering key: the partition as text, made once. */
  readonly key: string;
  /** The first record pushed; with the commit point, the group offsets that agree with what the track holds. */
  readonly first: string;
  lastPushed: string;
  /** The last handled (or dead-lettered) record, when there is one. */
  acked: string | undefined;
  /** The `acked` value the group's committed offset stands after, as far as this member knows. */
  committed: string | undefined;
  /** The lowest record the engine gave back unhandled. */
  nacked: string | undefined;
  /** Taken away (a rebalance, or the group moved on while this member was away): its acks count no more. */
  lost = false;
  /**
   * Owned under a new member id: not committed until the group's offset was
   * compared with what the track holds (another member may have had it meanwhile).
   */
  checking = false;

  constructor(
    readonly partition: number,
    first: string,
    readonly tracker: CommitTracker,
  ) {
    this.key = String(partition);
    this.first = first;
    this.lastPushed = first;
  }

  /** The offset that would be committed now: after the last handled record, or the first pushed one. */
  get commitPoint(): string {
    return this.acked === undefined ? this.first : nextOffset(this.acked);
  }

  /**
   * Whether the group's committed offset is one this track could have left
   * (between its first record and its commit point): then nobody else handled
   * past what it holds, and it may go on.
   */
  agrees(committed: string): boolean {
    return compareOffsets(committed, this.first) >= 0 && compareOffsets(committed, this.commitPoint) <= 0;
  }

  ack(offset: string): void {
    if (this.lost || (this.nacked !== undefined && compareOffsets(offset, this.nacked) >= 0)) return;
    this.acked = offset;
    this.tracker.acked();
  }

  nack(offset: string): void {
    if (this.nacked === undefined || compareOffsets(offset, this.nacked) < 0) this.nacked = offset;
  }
}

/** The consumer a commit goes through, and the join (generation, counted here) it belongs to. */
export interface Joined {
  readonly consumer: Consumer;
  readonly generation: number;
}

export interface CommitTrackerOptions {
  readonly topic: string;
  /** The consumer that joined last, while it is the subscription's consumer; undefined between consumers. */
  readonly joined: () => Joined | undefined;
  readonly warn: (message: string) => void;
}

/**
 * The partitions this subscription holds and their commits: a commit carries,
 * for every owned partition whose handled run grew, the offset after it. The
 * first ack after a quiet spell is committed at once, later ones at most every
 * `COMMIT_GAP_MS`; one commit is in flight at a time. Commits go through the
 * consumer of the current join (kafkajs' `commitOffsets`, with the group
 * generation of that moment), only for partitions owned and checked in it.
 * Bookkeeping is O(1) per message; a commit is O(partitions).
 */
export class CommitTracker {
  readonly #o: CommitTrackerOptions;
  readonly #tracks = new Map<number, PartitionTrack>();
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<void> | undefined;
  /** When the next commit may go: `COMMIT_GAP_MS` after the last one, `COMMIT_RETRY_MS` after a failure. */
  #notBefore = 0;
  #pending = false;
  #closed = false;

  constructor(options: CommitTrackerOptions) {
    this.#o = options;
  }

  get(partition: number): PartitionTrack | undefined {
    return this.#tracks.get(partition);
  }

  /** Starts tracking a partition at its first pushed record. */
  add(partition: number, first: string): PartitionTrack {
    const track = new PartitionTrack(partition, first, this);
    this.#tracks.set(partition, track);
    return track;
  }

  partitions(): IterableIterator<PartitionTrack> {
    return this.#tracks.values();
  }

  /** Stops tracking a partition: late acks of it are ignored and never committed. */
  drop(partition: number): PartitionTrack | undefined {
    const track = this.#tracks.get(partition);
    if (!track) return undefined;
    track.lost = true;
    this.#tracks.delete(partition);
    return track;
  }

  /** A track's handled run grew. */
  acked(): void {
    this.#pending = true;
    this.commitSoon();
  }

  /** Commits what is pending once the gap since the last commit passed (at once after a quiet spell). */
  commitSoon(): void {
    if (!this.#pending || this.#timer !== undefined || this.#inFlight !== undefined || this.#closed) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        void this.commitNow();
      },
      Math.max(0, this.#notBefore - Date.now()),
    );
  }

  /** A new join: what is pending goes now, in its generation, whatever failed before. */
  joined(): void {
    this.#notBefore = 0;
    this.commitSoon();
  }

  /** Commits what is pending now (after the commit in flight, if any); resolves when done or failed. */
  commitNow(): Promise<void> {
    if (this.#inFlight) return this.#inFlight.then(() => this.commitNow());
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const commit = this.#commit();
    if (!commit) return Promise.resolve();
    this.#inFlight = commit.finally(() => {
      this.#inFlight = undefined;
      this.commitSoon();
    });
    return this.#inFlight;
  }

  /** Commits everything handled so far (stop): after the commit in flight, what is left. */
  flush(): Promise<void> {
    return this.commitNow();
  }

  /** No more commits are scheduled (the subscription ended). */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #commit(): Promise<void> | undefined {
    const at = this.#o.joined();
    // No joined consumer: it stays pending; the next join asks for a commit.
    if (!at) return undefined;
    const { topic } = this.#o;
    const tracks: PartitionTrack[] = [];
    const acked: string[] = [];
    const offsets: { topic: string; partition: number; offset: string }[] = [];
    for (const track of this.#tracks.values()) {
      const last = track.acked;
      if (last === undefined || last === track.committed || track.checking) continue;
      tracks.push(track);
      acked.push(last);
      offsets.push({ topic, partition: track.partition, offset: nextOffset(last) });
    }
    this.#pending = false;
    if (offsets.length === 0) return undefined;
    this.#notBefore = Date.now() + COMMIT_GAP_MS;
    // Called now, with the tracks just read: the commit carries the generation whose assignment they reflect.
    return at.consumer.commitOffsets(offsets).then(
      () => {
        // kafkajs resolves without committing when its consumer stopped meanwhile: only a join still current counts.
        const now = this.#o.joined();
        if (now?.consumer !== at.consumer || now.generation !== at.generation) {
          this.#pending = true;
          return;
        }
        tracks.forEach((track, i) => {
          const offset = acked[i];
          if (offset !== undefined && (track.committed === undefined || compareOffsets(offset, track.committed) > 0)) track.committed = offset;
        });
      },
      (error: unknown) => {
        this.#pending = true;
        this.#notBefore = Date.now() + COMMIT_RETRY_MS;
        // A rebalance: the join that follows asks for a commit again, in its generation.
        if (!isRebalance(error)) this.#o.warn(`commit of ${topic} failed: ${describe(error)}; it will be retried`);
      },
    );
  }
}
