import type { Headers } from '@ktransport/broker';
import { type Consumer, type Delivery, DeliveryEngine, headerText, type RawMessage, type StopResult } from '@ktransport/broker/transport';
import { describe, isConnectionFailure, replyCode } from './errors.js';
import { fromFields, KEY_HEADER } from './headers.js';
import type { Link } from './link.js';
import type { RedisLogEntry, ResolvedOptions } from './options.js';

/** The native entry a received message carries in `raw`. */
export interface RedisStreamEntry {
  /** The stream key the entry was read from (keyPrefix + topic). */
  readonly stream: string;
  /** The entry id (`<ms>-<seq>`), also the message's `id`. */
  readonly id: string;
  /** Field names and values as Redis returned them, in order. */
  readonly fields: readonly Buffer[];
  /** Whether the entry was claimed from another member (or given back) with XAUTOCLAIM rather than read new. */
  readonly claimed: boolean;
  /**
   * With a group: how many times Redis delivered the entry to the group (the
   * delivery counter XPENDING shows), 1 for an entry read new, more for one
   * claimed after a member failed to acknowledge it. Absent without a group.
   */
  readonly deliveries?: number;
}

/** Longest XREAD/XREADGROUP BLOCK: how long a read waits for new entries before the loop looks around again. */
const BLOCK_MS = 5_000;
/** Most ids in one XACK or XCLAIM. */
const BATCH = 500;

export interface ReaderOptions {
  readonly topic: string;
  readonly key: string;
  /** The consumer group and this subscription's consumer name; none for a plain XREAD subscription. */
  readonly group: { readonly name: string; readonly consumer: string; readonly fromBeginning: boolean } | undefined;
  /** The subscription's consumer, and one for entries without a payload field (fails them with a DecodeError). */
  readonly consumer: Consumer;
  readonly malformed: Consumer;
  readonly concurrency: number;
  readonly options: ResolvedOptions;
  /** The broker's link: acknowledgements, claims, group administration. */
  readonly main: Link;
  /** This subscription's own link: blocking reads only. */
  readonly reader: Link;
  readonly log: (entry: RedisLogEntry) => void;
  /**
   * A requester's reply stream: plain XREAD from its first entry (the stream was
   * made empty just before), and each entry read is deleted (XDEL) so that the
   * stream never holds more than the replies not read yet.
   */
  readonly replies?: boolean;
}

/**
 * One `subscribe()` call: a read loop on a connection of its own (XREADGROUP
 * or XREAD with BLOCK, so that blocking never holds up publishes), the core
 * delivery engine, and for a group the acknowledgements (XACK after the
 * handler), the lease on held entries and the reclaim of abandoned ones
 * (XAUTOCLAIM).
 */
export class StreamReader {
  readonly engine: DeliveryEngine;
  readonly #o: ReaderOptions;
  /** Entries this subscription holds (queued, running, or acknowledged but not yet confirmed by Redis). */
  readonly #held = new Set<string>();
  #acks: string[] = [];
  #flushing: Promise<void> | undefined;
  #stopped = false;
  #paused = false;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  #lease: NodeJS.Timeout | undefined;
  /** Plain XREAD: the id after which to read. */
  #lastId = '0-0';
  #claimCursor = '0-0';
  #nextClaim = 0;
  #failing = false;
  /** Received entries without a payload field: handled by the consumer that fails them. */
  readonly #malformed = new WeakSet<RawMessage>();

  constructor(options: ReaderOptions) {
    this.#o = options;
    this.engine = new DeliveryEngine({
      consumer: (message, signal, slot) => (this.#malformed.has(message) ? options.malformed : options.consumer)(message, signal, slot),
      concurrency: options.concurrency,
      maxQueued: options.options.maxQueued,
      redeliveryDelayMs: options.options.redeliveryDelayMs,
      flow: {
        perKey: false,
        pause: () => (this.#paused = true),
        resume: () => {
          this.#paused = false;
          this.#wakeUp();
        },
      },
    });
  }

  /** Makes the group (or finds the stream's end) and starts reading; rejects with what Redis answered. */
  async start(): Promise<void> {
    const { group, key, main } = this.#o;
    if (group) await this.#createGroup(group.fromBeginning ? '0' : '$');
    else if (!this.#o.replies) {
      const last = await main.client.sendCommand<unknown[]>(['XREVRANGE', key, '+', '-', 'COUNT', '1']);
      const entry = last[0];
      if (Array.isArray(entry)) this.#lastId = String(entry[0]);
      // A missing key starts at 0-0: everything added from now on. A key of another type fails with WRONGTYPE.
    }
    if (group) this.#lease = setInterval(() => void this.#renew(), Math.max(50, Math.floor(this.#o.options.claimIdleMs / 3)));
    this.#loop = this.#read();
  }

  async #createGroup(id: string): Promise<void> {
    const group = this.#o.group;
    if (!group) return;
    try {
      await this.#o.main.client.sendCommand(['XGROUP', 'CREATE', this.#o.key, group.name, id, 'MKSTREAM']);
    } catch (error) {
      if (replyCode(error) !== 'BUSYGROUP') throw error;
    }
  }

  async #read(): Promise<void> {
    const { reader, options } = this.#o;
    let failures = 0;
    while (!this.#stopped) {
      const room = options.maxQueued - this.engine.queued;
      if (this.#paused || room <= 0) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      try {
        await reader.whenReady();
        if (this.#stopped) break;
        if (this.#o.group) await this.#readGroup(room);
        else await this.#readPlain(room);
        failures = 0;
        if (this.#failing) {
          this.#failing = false;
          this.#o.log({ level: 'warn', message: `reading ${headerText(this.#o.topic, 200)} works again` });
        }
      } catch (error) {
        if (this.#stopped) break;
        const code = replyCode(error);
        if ((code === 'NOGROUP' || code === 'UNBLOCKED') && this.#o.group) {
          // The stream or the group went away (deleted, or a Redis restart without persistence): make it again,
          // from the stream's first entry, so that nothing added since is skipped.
          await this.#createGroup('0').catch(() => undefined);
        } else if (!isConnectionFailure(error)) {
          if (!this.#failing) {
            this.#failing = true;
            this.#o.log({
              level: 'error',
              message: `reading ${headerText(this.#o.topic, 200)} failed: ${describe(error, options.redact)}; trying again`,
              error,
            });
          }
        }
        // Never a hot loop: a failing read waits, longer each time, up to 5 s.
        const wait = Math.min(100 * 2 ** Math.min(failures++, 10), 5_000);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    }
  }

  async #readGroup(room: number): Promise<void> {
    const group = this.#o.group;
    if (!group) return;
    const { key, reader, options } = this.#o;
    const now = Date.now();
    if (now >= this.#nextClaim) {
      const more = await this.#claim(room);
      this.#nextClaim = more ? now : now + Math.max(50, Math.floor(options.claimIdleMs / 2));
      return;
    }
    const block = Math.max(1, Math.min(BLOCK_MS, this.#nextClaim - now));
    const reply = await reader.client.sendCommand<unknown>([
      'XREADGROUP',
      'GROUP',
      group.name,
      group.consumer,
      'COUNT',
      String(room),
      'BLOCK',
      String(block),
      'STREAMS',
      key,
      '>',
    ]);
    this.#deliverStreams(reply, false);
  }

  async #readPlain(room: number): Promise<void> {
    const { key, reader } = this.#o;
    const reply = await reader.client.sendCommand<unknown>(['XREAD', 'COUNT', String(room), 'BLOCK', String(BLOCK_MS), 'STREAMS', key, this.#lastId]);
    this.#deliverStreams(reply, true);
  }

  /** XAUTOCLAIM: takes over entries idle for claimIdleMs (a crashed member's, or given back); true when there may be more. */
  async #claim(room: number): Promise<boolean> {
    const group = this.#o.group;
    if (!group) return false;
    const { key, reader, options } = this.#o;
    const reply = await reader.client.sendCommand<unknown[]>([
      'XAUTOCLAIM',
      key,
      group.name,
      group.consumer,
      String(options.claimIdleMs),
      this.#claimCursor,
      'COUNT',
      String(room),
    ]);
    const [cursor, entries] = reply;
    this.#claimCursor = String(cursor);
    if (Array.isArray(entries)) this.#deliverEntries(entries, true, await this.#deliveries(entries));
    return this.#claimCursor !== '0-0';
  }

  /** The delivery counters of claimed entries (XPENDING over their id range, for this consumer). */
  async #deliveries(entries: readonly unknown[]): Promise<Map<string, number>> {
    const group = this.#o.group;
    const counts = new Map<string, number>();
    const ids = entries.flatMap((entry) => (Array.isArray(entry) ? [String(entry[0])] : []));
    const [first] = ids;
    const last = ids[ids.length - 1];
    if (!group || first === undefined || last === undefined) return counts;
    const pending = await this.#o.reader.client.sendCommand<unknown[]>(['XPENDING', this.#o.key, group.name, first, last, String(ids.length), group.consumer]);
    for (const row of pending) if (Array.isArray(row)) counts.set(String(row[0]), Number(row[3]));
    return counts;
  }

  /** A XREAD/XREADGROUP reply: a map (RESP3) or list of pairs (RESP2) of key to `[[id, fields], ...]`, or null when the block ran out. */
  #deliverStreams(reply: unknown, plain: boolean): void {
    if (reply === null || typeof reply !== 'object') return;
    const lists: unknown[] =
      reply instanceof Map
        ? [...reply.values()]
        : Array.isArray(reply)
          ? (reply as unknown[]).map((s) => (Array.isArray(s) ? (s as unknown[])[1] : undefined))
          : [];
    for (const entries of lists) {
      if (!Array.isArray(entries)) continue;
      if (plain) {
        const last: unknown = entries[entries.length - 1];
        if (Array.isArray(last)) this.#lastId = String(last[0]);
        if (this.#o.replies) this.#deleteRead(entries);
      }
      this.#deliverEntries(entries, false);
    }
  }

  /** Deletes replies once read (not waited for: a failure only leaves them until the stream is deleted or expires). */
  #deleteRead(entries: readonly unknown[]): void {
    const ids = entries.flatMap((entry) => (Array.isArray(entry) ? [String(entry[0])] : []));
    if (ids.length === 0 || !this.#o.main.ready) return;
    this.#o.main.client.sendCommand(['XDEL', this.#o.key, ...ids]).catch(() => undefined);
  }

  #deliverEntries(entries: readonly unknown[], claimed: boolean, deliveries?: Map<string, number>): void {
    for (const entry of entries) {
      // An entry deleted from the stream but still pending comes back from XAUTOCLAIM as nil (Redis 6.2).
      if (!Array.isArray(entry)) continue;
      const id = String(entry[0]);
      const fields = Array.isArray(entry[1]) ? (entry[1] as Buffer[]) : [];
      // Our own entries come back from XAUTOCLAIM only if their lease lapsed; they are in the engine already.
      if (this.#held.has(id)) continue;
      if (this.#o.group) this.#held.add(id);
      this.#push(id, fields, claimed, this.#o.group ? (deliveries?.get(id) ?? 1) : undefined);
    }
  }

  #push(id: string, fields: Buffer[], claimed: boolean, deliveries: number | undefined): void {
    const { payload, headers } = fromFields(fields);
    const raw: RedisStreamEntry =
      deliveries === undefined ? { stream: this.#o.key, id, fields, claimed } : { stream: this.#o.key, id, fields, claimed, deliveries };
    const message = rawMessage(this.#o.topic, id, payload, headers, raw);
    if (payload === undefined) this.#malformed.add(message);
    const delivery: Delivery = { message, orderingKey: message.key, ack: () => this.#ack(id), nack: () => this.#nack(id) };
    this.engine.push(delivery);
  }

  #ack(id: string): void {
    if (!this.#o.group) return;
    this.#acks.push(id);
    this.#flushing ??= Promise.resolve().then(() => this.#flush());
  }

  /** Given back (shutdown): left pending, for another member to claim after claimIdleMs. */
  #nack(id: string): void {
    this.#held.delete(id);
  }

  /** Sends the acknowledgements gathered; what fails (connection lost) is sent again once connected. */
  async #flush(): Promise<void> {
    const group = this.#o.group;
    const { main, key } = this.#o;
    try {
      while (group && this.#acks.length > 0) {
        const batch = this.#acks.splice(0, BATCH);
        try {
          await main.client.sendCommand(['XACK', key, group.name, ...batch]);
          for (const id of batch) this.#held.delete(id);
        } catch (error) {
          this.#acks.unshift(...batch);
          if (!isConnectionFailure(error)) {
            this.#o.log({ level: 'error', message: `XACK on ${headerText(this.#o.topic, 200)} failed: ${describe(error, this.#o.options.redact)}`, error });
            await sleep(1_000);
          }
          await main.whenReady();
        }
      }
    } catch {
      // closed: what is not acknowledged stays pending, for the group to claim
    } finally {
      this.#flushing = undefined;
    }
  }

  /** Keeps the entries this subscription holds claimed by it: resets their idle time (XCLAIM JUSTID, no delivery counted). */
  async #renew(): Promise<void> {
    const group = this.#o.group;
    if (!group || this.#held.size === 0 || !this.#o.main.ready) return;
    const ids = [...this.#held];
    for (let i = 0; i < ids.length; i += BATCH) {
      await this.#o.main.client
        .sendCommand(['XCLAIM', this.#o.key, group.name, group.consumer, '0', ...ids.slice(i, i + BATCH), 'JUSTID'])
        .catch(() => undefined);
    }
  }

  /** Stops reading: the blocking read is cut off by closing this subscription's connection. */
  async stopReading(): Promise<void> {
    this.#stopped = true;
    if (this.#lease) clearInterval(this.#lease);
    this.#wakeUp();
    await this.#o.reader.close(false);
    await this.#loop?.catch(() => undefined);
  }

  /**
   * After the engine stopped: sends the last acknowledgements (bounded by
   * `timeoutMs`), and removes this subscription's consumer from its group when
   * it holds no pending entry.
   */
  async settle(timeoutMs: number): Promise<void> {
    const group = this.#o.group;
    if (!group) return;
    const { main, key } = this.#o;
    if (!main.ready) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    const work = (async () => {
      if (this.#acks.length > 0) await (this.#flushing ??= this.#flush());
      await this.#flushing;
      const pending = await main.client.sendCommand<unknown[]>(['XPENDING', key, group.name, '-', '+', '1', group.consumer]);
      if (pending.length === 0) await main.client.sendCommand(['XGROUP', 'DELCONSUMER', key, group.name, group.consumer]);
    })().catch(() => undefined);
    await Promise.race([work, late]);
    clearTimeout(timer);
  }

  /** Unsubscribe: stops reading, handles what was read (within `timeoutMs`), acknowledges. */
  async finish(timeoutMs: number): Promise<StopResult> {
    await this.stopReading();
    const result = await this.engine.finish(timeoutMs);
    await this.settle(2_000);
    return result;
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

function rawMessage(topic: string, id: string, payload: Buffer | undefined, headers: Headers, raw: RedisStreamEntry): RawMessage {
  const message: { -readonly [K in keyof RawMessage]: RawMessage[K] } = { topic, body: payload ?? Buffer.alloc(0), headers, id, raw };
  const key = headers[KEY_HEADER];
  if (key !== undefined) message.key = key;
  const ms = Number(id.slice(0, id.indexOf('-')));
  if (Number.isSafeInteger(ms) && ms > 0) message.timestamp = ms;
  return message;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
