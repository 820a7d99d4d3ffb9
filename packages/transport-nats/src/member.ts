import { SubscribeError } from '@ktransport/broker';
import { type Consumer, type Delivery, DeliveryEngine, type RawMessage } from '@ktransport/broker/transport';
import {
  AckPolicy,
  type ConsumeCallback,
  type ConsumerConfig,
  DeliverPolicy,
  type FetchMessages,
  type JetStreamClient,
  type JetStreamManager,
  type ConsumerMessages,
  type JsMsg,
  type Consumer as PullConsumer,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import { describeError } from './errors.js';
import { fromNatsHeaders, KEY_HEADER } from './headers.js';
import type { NatsDeliverPolicy, ResolvedOptions } from './options.js';
import { topicOf } from './subjects.js';

/** How a subscription's consumer is made. */
export interface ConsumerSpec {
  readonly stream: string;
  /** The durable name (a group) or the name of an ephemeral consumer. */
  readonly name: string;
  readonly durable: boolean;
  readonly filterSubject: string;
  readonly deliverPolicy: NatsDeliverPolicy;
}

/** What a member needs of its broker. */
export interface MemberContext {
  readonly options: ResolvedOptions;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /** Told of problems no caller can be told of (a consumer that could not be made again). */
  readonly report: (error: unknown) => void;
}

/** Time an ephemeral consumer outlives its last pull: long enough for a reconnect. */
const EPHEMERAL_INACTIVE_MS = 120_000;
/**
 * Expiry of each pull request. nats.js asks the server for idle heartbeats at
 * half of it and ends the request (with an error) when two are missed: an event
 * loop stalled that long loses what was on its way for that request until
 * `ack_wait`, so it is not made shorter. A message given back waits until the
 * last request expired.
 */
export const PULL_EXPIRES_MS = 3_000;

/**
 * One `subscribe()` call: a pull consumer (durable for a group, ephemeral
 * otherwise) consumed into its own DeliveryEngine. Every message handed to the
 * engine is held until the engine acks or nacks it, and told to the server as
 * in progress (`working()`) every third of `ack_wait` meanwhile.
 */
export class Member {
  readonly engine: DeliveryEngine;
  readonly #spec: ConsumerSpec;
  readonly #context: MemberContext;
  readonly #held = new Set<JsMsg>();
  #consumer: PullConsumer | undefined;
  #pulling: Promise<void> | undefined;
  /** The pull request in progress, and when the last one was made. */
  #batch: ConsumerMessages | undefined;
  #requested = 0;
  /** Wakes the intake waiting for room in the window (or for its next attempt). */
  #wake: (() => void) | undefined;
  #working: NodeJS.Timeout | undefined;
  /** Stream sequence to start from when the consumer has to be made again: after the last one received. */
  #nextSeq = 0;
  #stopped = false;
  /** Messages given back while the intake may still be open, sent once it ended (see #giveBack). */
  #naks: JsMsg[] | undefined = [];

  constructor(spec: ConsumerSpec, context: MemberContext, consumer: Consumer, concurrency: number) {
    this.#spec = spec;
    this.#context = context;
    // No FlowControl: the consumer's max_ack_pending bounds what the server delivers before acks come back.
    this.engine = new DeliveryEngine({ consumer, concurrency, redeliveryDelayMs: context.options.redeliveryDelayMs });
  }

  get spec(): ConsumerSpec {
    return this.#spec;
  }

  /** Makes (or binds to) the consumer and starts pulling. */
  async start(): Promise<void> {
    await this.#ensureConsumer(this.#spec.deliverPolicy === 'all' ? DeliverPolicy.All : DeliverPolicy.New);
    this.#consumer = await this.#context.js.consumers.get(this.#spec.stream, this.#spec.name);
    this.#pulling = this.#pull();
    const every = Math.max(100, Math.floor(this.#context.options.ackWaitMs / 3));
    this.#working = setInterval(() => {
      for (const m of this.#held) m.working();
    }, every);
    this.#working.unref();
  }

  /**
   * The intake: one pull request at a time for as many messages as the window
   * has room for (`maxAckPending` minus what this member holds), each expiring
   * after PULL_EXPIRES_MS. On stop no new request is made and the last one is
   * ended (see stopIntake).
   */
  async #pull(): Promise<void> {
    const window = this.#context.options.maxAckPending;
    let failures = 0;
    while (!this.#stopped) {
      const room = window - this.#held.size;
      if (room <= 0) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      try {
        const consumer = this.#consumer;
        if (!consumer) throw new Error('no consumer');
        this.#requested = Date.now();
        // A callback, not the async iterator: the messages of one socket read are received (and their
        // handlers start) in that read's turn, so the acks they lead to leave in one write, not one each.
        // nats.js' fetch takes the consume callback although its FetchOptions type does not list it.
        const options: FetchMessages & ConsumeCallback = { max_messages: room, expires: PULL_EXPIRES_MS, callback: this.#onMessage };
        const batch = await consumer.fetch(options);
        this.#batch = batch;
        if (this.#stopped) void this.#endBatch();
        const failed = await batch.closed();
        this.#batch = undefined;
        if (failed) throw failed;
        failures = 0;
      } catch (error) {
        if (this.#stopped) break;
        failures++;
        await this.#recover(error, failures);
      }
    }
  }

  /** After a failed pull: the consumer made again when it is gone, then a pause growing with the failures. */
  async #recover(error: unknown, failures: number): Promise<void> {
    const { jsm, js, options } = this.#context;
    const { stream, name } = this.#spec;
    const gone = await jsm.consumers.info(stream, name).then(
      () => false,
      (e: unknown) => e instanceof Error && /consumer not found/i.test(e.message),
    );
    if (gone) {
      try {
        // From the first stream sequence this member has not received (a group's other members may have
        // handled some of those: at-least-once). A stream made again (a memory stream after a server
        // restart) numbers from 1 again: then from its start.
        const state = (await jsm.streams.info(stream)).state;
        const from = Math.max(1, state.last_seq + 1 < this.#nextSeq ? state.first_seq : this.#nextSeq);
        await this.#ensureConsumer(DeliverPolicy.StartSequence, from);
        this.#nextSeq = from;
        this.#consumer = await js.consumers.get(stream, name);
        return;
      } catch (e) {
        if (failures % 10 === 1) {
          this.#context.report(
            new SubscribeError(this.#spec.filterSubject, `cannot make consumer ${name} of stream ${stream} again: ${describeError(e)}`, {
              cause: e,
              retriable: true,
            }),
          );
        }
      }
    } else if (failures % 30 === 0) {
      this.#context.report(
        new SubscribeError(this.#spec.filterSubject, `pulling from consumer ${name} of stream ${stream} keeps failing: ${describeError(error)}`, {
          cause: error,
          retriable: true,
        }),
      );
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, Math.min(5_000, Math.max(options.reconnectWaitMs, 100) * failures));
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** The consumer config for this subscription. */
  #config(policy: DeliverPolicy, startSeq?: number): Partial<ConsumerConfig> {
    const { options } = this.#context;
    const config: Partial<ConsumerConfig> = {
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(options.ackWaitMs),
      max_ack_pending: options.maxAckPending,
      max_deliver: -1,
      filter_subject: this.#spec.filterSubject,
      deliver_policy: policy,
    };
    if (startSeq !== undefined) config.opt_start_seq = startSeq;
    if (this.#spec.durable) config.durable_name = this.#spec.name;
    else {
      config.name = this.#spec.name;
      config.inactive_threshold = nanos(EPHEMERAL_INACTIVE_MS);
    }
    return config;
  }

  /**
   * Creates the consumer, or binds to the group's existing durable: its position
   * and settings are kept, but it must filter the subscription's subject.
   */
  async #ensureConsumer(policy: DeliverPolicy, startSeq?: number): Promise<void> {
    const { jsm } = this.#context;
    const { stream, name, filterSubject, durable } = this.#spec;
    if (durable) {
      const existing = await jsm.consumers.info(stream, name).catch(() => undefined);
      if (existing) {
        if (this.#nextSeq === 0) this.#nextSeq = existing.delivered.stream_seq + 1;
        if ((existing.config.filter_subject ?? '') !== filterSubject) {
          throw new SubscribeError(
            filterSubject,
            `durable consumer ${name} of stream ${stream} filters "${existing.config.filter_subject ?? ''}", not "${filterSubject}"`,
          );
        }
        return;
      }
    }
    try {
      const info = await jsm.consumers.add(stream, this.#config(policy, startSeq));
      if (this.#nextSeq === 0) this.#nextSeq = info.delivered.stream_seq + 1;
    } catch (error) {
      // Another member of the group made it meanwhile.
      if (durable && (await jsm.consumers.info(stream, name).catch(() => undefined))) return;
      throw error;
    }
  }

  /**
   * Gives a message back to the server for redelivery. While this member's pull
   * request may still be open, the server would redeliver it into that very
   * request: the `nak` waits until the intake ended.
   */
  #giveBack(m: JsMsg): void {
    if (this.#naks) this.#naks.push(m);
    else this.#nak(m);
  }

  /**
   * `nak`, delayed until this member's last pull request expired at the server
   * (PULL_EXPIRES_MS after it was made): the server may redeliver into a request
   * whose inbox is gone, and such a message would wait for `ack_wait`.
   */
  #nak(m: JsMsg): void {
    const open = this.#requested + PULL_EXPIRES_MS + 100 - Date.now();
    if (open > 0) m.nak(open);
    else m.nak();
  }

  readonly #onMessage = (m: JsMsg): void => this.#receive(m);
  /** The topic of the last subject received: a filter without wildcards receives one subject only. */
  #lastSubject = '';
  #lastTopic = '';

  #topic(subject: string): string {
    if (subject !== this.#lastSubject) {
      this.#lastTopic = topicOf(subject);
      this.#lastSubject = subject;
    }
    return this.#lastTopic;
  }

  #receive(m: JsMsg): void {
    if (this.#stopped) {
      this.#giveBack(m);
      return;
    }
    const info = m.info;
    const seq = info.streamSequence;
    if (seq >= this.#nextSeq) this.#nextSeq = seq + 1;
    const headers = fromNatsHeaders(m.headers);
    const key = headers[KEY_HEADER];
    const offset = String(seq);
    const topic = this.#topic(m.subject);
    const id = headers['message-id'] ?? offset;
    const timestamp = Math.floor(info.timestampNanos / 1_000_000);
    const message: RawMessage =
      key === undefined
        ? { topic, body: m.data, headers, id, timestamp, offset, raw: m }
        : { topic, body: m.data, headers, id, timestamp, offset, raw: m, key };
    this.#held.add(m);
    this.engine.push(new NatsDelivery(message, key, m, this));
  }

  /** The engine's outcome for a message it held: acknowledged (`+ACK`), or given back (see #giveBack). */
  settle(m: JsMsg, handled: boolean): void {
    this.#held.delete(m);
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
    if (handled) m.ack();
    else this.#giveBack(m);
  }

  /**
   * Ends the pull request in progress: its subscription is drained (UNSUB, then a
   * flush, after which what the server sent for it has arrived and is handed to
   * #receive, which gives it back). nats.js' fetch has no drain of its own, so this
   * reaches for the subscription it holds; where there is none, the request runs
   * out by itself within PULL_EXPIRES_MS.
   */
  async #endBatch(): Promise<void> {
    const sub = (this.#batch as { sub?: { drain?: () => Promise<void> } } | undefined)?.sub;
    if (typeof sub?.drain === 'function') await sub.drain().catch(() => undefined);
  }

  /**
   * Stops pulling: no new pull request is made and the last one is ended (see
   * #endBatch; bounded by `limitMs` when the server does not answer). Messages to
   * give back (queued in the engine, or arriving meanwhile) are then `nak`ed with
   * a delay that ends when that last request expired at the server (see #nak).
   * What the engine holds stays until it acks or nacks it.
   */
  async stopIntake(limitMs: number): Promise<void> {
    this.#stopped = true;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
    void this.#endBatch();
    await bounded(this.#pulling, limitMs);
    const naks = this.#naks ?? [];
    this.#naks = undefined;
    for (const m of naks) this.#nak(m);
  }

  /** Stops the in-progress notices (after the engine settled everything it holds, or before closing). */
  release(): void {
    if (this.#working) clearInterval(this.#working);
    this.#working = undefined;
  }

  /** Deletes an ephemeral consumer (a group's durable stays, with its position, as a Kafka group does). */
  async removeEphemeral(): Promise<void> {
    if (this.#spec.durable) return;
    await this.#context.jsm.consumers.delete(this.#spec.stream, this.#spec.name).catch(() => undefined);
  }
}

/**
 * One message in the engine. The engine calls `ack` or `nack` once, as a method:
 * the outcome goes to its member without closures made per message.
 */
class NatsDelivery implements Delivery {
  constructor(
    readonly message: RawMessage,
    readonly orderingKey: string | undefined,
    readonly m: JsMsg,
    readonly member: Member,
  ) {}

  ack(): void {
    this.member.settle(this.m, true);
  }

  nack(): void {
    this.member.settle(this.m, false);
  }
}

/** Waits for `promise` (or nothing), at most `ms` milliseconds. */
async function bounded(promise: Promise<void> | undefined, ms: number): Promise<void> {
  if (ms <= 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise ?? new Promise<void>(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
