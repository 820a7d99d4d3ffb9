import { createHash, randomUUID } from 'node:crypto';
import type {
  Broker,
  ConnectionState,
  Handler,
  Message,
  ObservableConnection,
  RequestOptions,
  Requester,
  SubscribeOptions,
  Subscription,
} from '@ktransport/broker';
import { type BrokerError, ConfigurationError, ConnectionError, DrainTimeoutError, PublishError, SubscribeError } from '@ktransport/broker';
import {
  invalidTextIndex,
  loadedSubscription,
  MessagePipeline,
  type OutgoingMessage,
  type ReplyPublish,
  RequestClient,
  type StopResult,
} from '@ktransport/broker/transport';
import { type JetStreamClient, jetstream, type JetStreamManager, jetstreamManager, type PubAck } from '@nats-io/jetstream';
import { createInbox, type NatsConnection } from '@nats-io/nats-core';
import { connect as natsConnect } from '@nats-io/transport-node';
import { describeError, InvalidHeaderError, isNoResponders, PayloadTooLargeError, toConnectionError, toPublishError } from './errors.js';
import { assertReplySubject, fromNatsHeaders, KEY_HEADER, toNatsHeaders } from './headers.js';
import { Member } from './member.js';
import type { InferOutput, NatsBrokerOptions, NatsPublishOptions, NatsSubscribeOptions, ResolvedOptions, Schema } from './options.js';
import { deliverPolicy, groupName, resolveOptions } from './options.js';
import { ensureStreams, streamFor } from './streams.js';
import { filterSubject, publishSubject } from './subjects.js';

type Phase = 'idle' | 'connecting' | 'open' | 'draining' | 'closing';

/** Whether a dead-letter publish is the broker's own (never refused for the connection's state). */
type SendOptions = NatsPublishOptions;

/**
 * A Broker over NATS JetStream (nats.js v3): the NATS wire on the core
 * delivery engine. One connection carries publishes (each resolved by its
 * PubAck) and every subscription's pull consumer; each `subscribe()` call hands
 * its messages to its own DeliveryEngine (queue, concurrency, per-key order,
 * redelivery, drain), and a message is acknowledged only after its handler
 * succeeded or it was dead-lettered. See the package README for the semantics.
 */
export class NatsBroker implements Broker, Requester, ObservableConnection {
  readonly system = 'nats';
  readonly #options: ResolvedOptions;
  readonly #pipeline: MessagePipeline;
  readonly #publish: (topic: string, body: unknown, options?: SendOptions) => Promise<void>;
  readonly #members = new Set<Member>();
  readonly #listeners = new Set<(state: ConnectionState) => void>();
  readonly #reportError: (error: unknown) => void;
  #state: ConnectionState = 'disconnected';
  #nc: NatsConnection | undefined;
  #js: JetStreamClient | undefined;
  #jsm: JetStreamManager | undefined;
  #phase: Phase = 'idle';
  #connecting: Promise<void> | undefined;
  /**
   * Publishes waiting for their PubAck, each by the function that fails it: all fail at once
   * (retriable) when the connection is lost. Each leaves the set when it settles, so nothing
   * accumulates while the connection stays up.
   */
  readonly #awaitingAck = new Set<(error: Error) => void>();
  /** The requester side: its inbox is a core-NATS subscription of this connection (see #subscribeInbox). */
  readonly #requests: RequestClient;
  /** Sends a responder's reply: a core-NATS publish to the request's `reply-to` subject, through the publish middleware (tracing). */
  readonly #reply: ReplyPublish;

  constructor(options: NatsBrokerOptions = {}) {
    this.#options = resolveOptions(options);
    this.#pipeline = new MessagePipeline(this.system, options);
    // Problems no caller can be told of (a consumer that could not be made again): one bounded line on stderr.
    this.#reportError = (error) => console.error(`ktransport: ${describeError(error, this.#options.secrets)}`);
    this.#publish = this.#pipeline.publisher<SendOptions>((message) => this.#send(message));
    this.#reply = MessagePipeline.deadLetterVia(this.#pipeline.publisher<SendOptions>((message) => this.#sendReply(message)));
    this.#requests = new RequestClient(
      {
        publish: (topic, body, options) => this.publish(topic, body, options),
        subscribe: (subject, handler, options) => this.#subscribeInbox(subject, handler, options),
      },
      {
        codecs: this.#pipeline.codecs,
        defaultCodec: this.#pipeline.defaultCodec,
        // `_INBOX.<nuid>`: no stream captures it; a new one per connection (the RequestClient forgets it on disconnect).
        replyTopic: () => createInbox(),
      },
    );
  }

  get state(): ConnectionState {
    return this.#state;
  }

  onStateChange(listener: (state: ConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #set(state: ConnectionState): void {
    if (state === this.#state) return;
    this.#state = state;
    for (const listener of [...this.#listeners]) listener(state);
  }

  /**
   * Connects once (each server of the URL tried once, each within
   * `connectTimeoutMs`), checks that JetStream answers, and binds to or creates
   * the configured streams. Rejects with AuthenticationError, ConnectionError or
   * ConfigurationError instead of retrying forever; once connected, nats.js
   * reconnects on its own.
   */
  connect(): Promise<void> {
    if (this.#phase === 'open') return Promise.resolve();
    if (this.#phase === 'draining' || this.#phase === 'closing') return Promise.reject(new ConnectionError('nats broker is disconnecting'));
    this.#connecting ??= this.#open().finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  async #open(): Promise<void> {
    this.#phase = 'connecting';
    this.#set('connecting');
    const o = this.#options;
    let nc: NatsConnection;
    try {
      nc = await natsConnect({
        servers: o.servers,
        ...(o.user === undefined ? {} : { user: o.user }),
        ...(o.pass === undefined ? {} : { pass: o.pass }),
        ...(o.token === undefined ? {} : { token: o.token }),
        ...(o.tls ? { tls: o.tls } : {}),
        name: `ktransport-${randomUUID().slice(0, 8)}`,
        timeout: o.connectTimeoutMs,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: o.reconnectWaitMs,
        reconnectJitter: Math.min(100, o.reconnectWaitMs),
        waitOnFirstConnect: false,
        // Otherwise nats.js makes an Error (a stack captured) per request, PubAcks included, only to
        // lengthen the stack of a failed request; ktransport's own errors carry the cause.
        noAsyncTraces: true,
      });
    } catch (error) {
      this.#phase = 'idle';
      this.#set('disconnected');
      throw toConnectionError(error, o.displayUrl, o.secrets);
    }
    try {
      const jsm = await jetstreamManager(nc, { timeout: o.connectTimeoutMs });
      await ensureStreams(jsm, o.streams);
      this.#jsm = jsm;
      this.#js = jetstream(nc, { timeout: o.publishTimeoutMs });
    } catch (error) {
      await nc.close().catch(() => undefined);
      this.#phase = 'idle';
      this.#set('disconnected');
      if (error instanceof ConfigurationError) throw error;
      throw toConnectionError(error, o.displayUrl, o.secrets);
    }
    this.#nc = nc;
    void this.#watch(nc);
    this.#phase = 'open';
    this.#set('connected');
  }

  /** Connection events as states: lost → reconnecting, back → connected (streams made again). */
  async #watch(nc: NatsConnection): Promise<void> {
    for await (const status of nc.status()) {
      if (this.#nc !== nc) return;
      if (status.type === 'disconnect' || status.type === 'reconnecting' || status.type === 'staleConnection') {
        this.#set('reconnecting');
        // Publishes waiting for their PubAck will not get it on this connection: they fail now, not at their timeout.
        const lost = new ConnectionError('the connection to NATS was lost before the PubAck came (the message may have been stored)');
        const waiting = [...this.#awaitingAck];
        this.#awaitingAck.clear();
        for (const fail of waiting) fail(lost);
      } else if (status.type === 'reconnect') {
        this.#set('connected');
        // A restarted server without its (memory) streams gets them back; existing ones are left as they are.
        const jsm = this.#jsm;
        if (jsm) ensureStreams(jsm, this.#options.streams).catch((error: unknown) => this.#reportError(error));
      }
    }
    if (this.#nc === nc) {
      // Closed by nats.js itself (e.g. credentials refused on every reconnect).
      this.#nc = undefined;
      this.#requests.close(new ConnectionError(`the connection to NATS at ${this.#options.displayUrl} closed before the reply arrived`));
      this.#set('closed');
    }
  }

  /**
   * Stops taking messages and starts no queued one: every subscription's engine
   * stops (the core's drain). Messages received but not started, and failed ones
   * waiting for redelivery, are given back at once (`nak`). Handlers already
   * running may finish (bounded by drainTimeoutMs) and are acknowledged, then
   * the connection is drained and closed. Rejects with DrainTimeoutError only
   * when handlers were still running at the time limit.
   */
  async disconnect(): Promise<void> {
    if (this.#connecting) await this.#connecting.catch(() => undefined);
    if (this.#phase !== 'open') return;
    this.#phase = 'draining';
    this.#requests.close(new ConnectionError(`disconnected from NATS at ${this.#options.displayUrl} before the reply arrived`));
    const members = [...this.#members];
    // Both at once: the engine starts nothing queued from now on, while the last pull request runs out.
    const [results] = await Promise.all([
      Promise.all(members.map((member): Promise<StopResult> => member.engine.stop(this.#pipeline.drainTimeoutMs))),
      Promise.all(members.map((member) => member.stopIntake(this.#options.connectTimeoutMs))),
    ]);
    let running = 0;
    let queued = 0;
    for (const result of results) {
      running += result.running;
      queued += result.queued;
    }
    this.#phase = 'closing';
    await Promise.all(members.map((member) => member.removeEphemeral()));
    for (const member of members) member.release();
    this.#members.clear();
    const nc = this.#nc;
    this.#nc = undefined;
    this.#js = undefined;
    this.#jsm = undefined;
    if (nc) {
      // Flushes the acknowledgements just sent; bounded in case the server is gone.
      await Promise.race([nc.drain().catch(() => nc.close()), sleep(this.#options.connectTimeoutMs).then(() => nc.close())]).catch(() => undefined);
    }
    this.#phase = 'idle';
    this.#set('closed');
    if (running > 0) throw new DrainTimeoutError(running, this.#pipeline.drainTimeoutMs, queued);
  }

  /**
   * Encodes `body` and publishes it to the subject of `topic` (`/` → `.`).
   * Resolves when a JetStream stream stored it (its PubAck), within
   * `publishTimeoutMs`. The topic, every header and the size (against the
   * server's `max_payload`) are checked before anything is sent: what NATS
   * cannot carry rejects with a non-retriable InvalidTopicError,
   * InvalidHeaderError or PayloadTooLargeError, and the connection is not
   * affected. A subject no stream captures rejects with a NoStreamError; no
   * PubAck in time, with a retriable PublishError; not connected, with a
   * ConnectionError.
   */
  publish<T = unknown>(topic: string, body: T, options?: NatsPublishOptions): Promise<void> {
    if (this.#phase !== 'open' && this.#phase !== 'draining') {
      return Promise.reject(new ConnectionError(`cannot publish to ${topic}: nats broker is not connected`));
    }
    try {
      publishSubject(topic);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#publish(topic, body, options);
  }

  /** Not an async function: a publish waiting for its PubAck holds one promise and two callbacks. */
  #send(message: OutgoingMessage<SendOptions>): Promise<void> {
    try {
      return this.#sendChecked(message);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #sendChecked(message: OutgoingMessage<SendOptions>): Promise<void> {
    const { topic, payload, key, options } = message;
    const js = this.#js;
    const nc = this.#nc;
    if (!js || !nc) throw new ConnectionError(`cannot publish to ${topic}: nats broker is not connected`);
    // nats.js would hold the request until it reconnected, where a restarting server may drop it unanswered
    // (the publish then waits its whole publishTimeoutMs): refused at once, the caller may try again.
    if (this.#state === 'reconnecting') throw new ConnectionError(`cannot publish to ${topic}: the connection to NATS is being re-established`);
    const subject = publishSubject(topic);
    const headers = key === undefined ? message.headers : { ...message.headers, [KEY_HEADER]: key };
    const natsHeaders = toNatsHeaders(topic, headers);
    if (options.msgId !== undefined && (typeof options.msgId !== 'string' || options.msgId === '' || invalidTextIndex(options.msgId) >= 0)) {
      throw new InvalidHeaderError(topic, 'Nats-Msg-Id', 'must be a non-empty string without control characters (the msgId option)');
    }
    const limit = nc.info?.max_payload;
    if (limit !== undefined) {
      const size = payload.byteLength + headerBytes(headers, options.msgId);
      if (size > limit) throw new PayloadTooLargeError(topic, size, limit);
    }
    // Settled by the PubAck (or the request's failure), or failed at once when the connection is lost
    // (#awaitingAck); whatever comes second is ignored.
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const waiting = this.#awaitingAck;
      const fail = (error: unknown): void => {
        if (settled) return;
        settled = true;
        waiting.delete(fail);
        if (isNoResponders(error)) this.#noResponders(topic, subject, error).then(reject, reject);
        else reject(toPublishError(topic, subject, error, this.#options.secrets));
      };
      let sent: Promise<PubAck>;
      try {
        sent = js.publish(subject, payload, {
          headers: natsHeaders,
          timeout: this.#options.publishTimeoutMs,
          ...(options.msgId === undefined ? {} : { msgID: options.msgId }),
        });
      } catch (error) {
        fail(error);
        return;
      }
      waiting.add(fail);
      sent.then(() => {
        if (settled) return;
        settled = true;
        waiting.delete(fail);
        resolve();
      }, fail);
    });
  }

  /**
   * A responder's reply: a core-NATS publish (no stream, no PubAck: at most
   * once) to the `reply-to` subject of the request, which must be a literal
   * subject (an InvalidHeaderError otherwise, reported to `onError`; nothing
   * is sent and the connection is not affected). While the connection is being
   * re-established nats.js holds it and sends it once reconnected.
   */
  #sendReply(message: OutgoingMessage<SendOptions>): Promise<void> {
    const { topic: subject, payload, headers } = message;
    try {
      const nc = this.#nc;
      if (!nc) throw new ConnectionError(`cannot reply to ${subject}: nats broker is not connected`);
      assertReplySubject(subject, subject);
      const natsHeaders = toNatsHeaders(subject, headers);
      const limit = nc.info?.max_payload;
      if (limit !== undefined) {
        const size = payload.byteLength + headerBytes(headers, undefined);
        if (size > limit) throw new PayloadTooLargeError(subject, size, limit);
      }
      nc.publish(subject, payload, { headers: natsHeaders });
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(toPublishError(subject, subject, error, this.#options.secrets));
    }
  }

  /**
   * The requester's inbox: a core-NATS subscription to `subject` on this
   * connection (no stream captures `_INBOX.>`), each reply handed to `handler`
   * through the subscribe pipeline (tracing, metrics, middleware, decoding with
   * `options`). nats.js subscribes it again after a reconnect;
   * it ends with the connection.
   */
  #subscribeInbox(subject: string, handler: Handler<Uint8Array>, options: SubscribeOptions): Promise<Subscription> {
    const nc = this.#nc;
    if (this.#phase !== 'open' || !nc) return Promise.reject(new ConnectionError('cannot send a request: nats broker is not connected'));
    // Through the subscribe pipeline like any received message (with the options the
    // RequestClient gives: the bytes codec, no retry, dead-letter or reply): the reply gets
    // its `process <inbox>` span, a child of the reply's send span, its metrics and the
    // subscribe middleware, as on the other transports.
    const deadLetter = MessagePipeline.deadLetterVia((topic, body, publishOptions) => this.#publish(topic, body, publishOptions));
    const consume = this.#pipeline.consumer(subject, handler, options, deadLetter);
    const signal = new AbortController().signal;
    try {
      const inbox = nc.subscribe(subject, {
        callback: (error, m) => {
          if (error) return;
          // Core NATS: nothing to acknowledge; the RequestClient's handler settles the waiting request and never throws.
          consume({ topic: subject, body: m.data, headers: fromNatsHeaders(m.headers), raw: m }, signal).catch(() => undefined);
        },
      });
      return Promise.resolve({ topic: subject, unsubscribe: () => Promise.resolve(inbox.unsubscribe()) });
    } catch (error) {
      return Promise.reject(toConnectionError(error, this.#options.displayUrl, this.#options.secrets));
    }
  }

  /**
   * Publishes a request and resolves with its reply (see `Requester`). The
   * request is a JetStream publish like any other (stored, so a group gets it
   * even while its responders are briefly down) with the `reply-to` header set
   * to this broker's core-NATS inbox (`_INBOX.<nuid>`, subscribed on the first
   * request and new after every `connect()`) and a random `correlation-id`
   * header; the responder publishes the reply there with the same
   * `correlation-id`. A reply is at most once: one lost makes the request
   * reject with a TimeoutError after `timeoutMs`.
   */
  request<S extends Schema>(topic: string, body: unknown, options: RequestOptions<S> & NatsPublishOptions & { schema: S }): Promise<Message<InferOutput<S>>>;
  /** Publishes a request and resolves with its reply, its body decoded by its content type. */
  request<T = unknown>(topic: string, body: unknown, options?: RequestOptions & NatsPublishOptions): Promise<Message<T>>;
  request(topic: string, body: unknown, options?: RequestOptions & NatsPublishOptions): Promise<Message> {
    return this.#requests.request(topic, body, options);
  }

  /**
   * "No responders" to a publish: either no stream captures the subject (a
   * NoStreamError), or its stream has no leader at the moment (a JetStream
   * cluster electing one after a node failed), which may pass: the stream
   * lookup tells them apart.
   */
  async #noResponders(topic: string, subject: string, error: unknown): Promise<BrokerError> {
    const jsm = this.#jsm;
    const stream = jsm
      ? await jsm.streams.find(subject).then(
          (name) => name,
          (e: unknown) => (e instanceof Error && /no stream matches/i.test(e.message) ? null : undefined),
        )
      : undefined;
    if (stream === null) return toPublishError(topic, subject, error, this.#options.secrets);
    const where = stream === undefined ? 'its stream could not be looked up' : `stream ${stream} captures it but did not answer (no leader?)`;
    return new PublishError(topic, `publish to ${topic} failed: no responders for "${subject}": ${where}`, { cause: error, retriable: true });
  }

  /**
   * Delivers messages matching `topic` to `handler`, each body validated by
   * `options.schema` and typed by its output. A body that fails the schema is
   * not retried: it goes to `deadLetter`, or without one is delivered again and
   * again. Otherwise as the signature without a schema.
   */
  subscribe<S extends Schema>(topic: string, handler: Handler<InferOutput<S>>, options: NatsSubscribeOptions<S> & { schema: S }): Promise<Subscription>;
  /**
   * Delivers messages matching `topic` (`+` and `#` wildcards, as NATS `*` and
   * `>`) to `handler`, each body decoded by its content type. The stream that
   * captures the subject is looked up; a group uses its durable consumer
   * (created when missing), no group a consumer of this subscription's own.
   * Rejects with a SubscribeError when no stream captures the subject, a
   * ConfigurationError for a filter or group NATS cannot carry, a
   * ConnectionError when not connected. A message is acknowledged only after
   * its handler resolved or it was dead-lettered; up to `concurrency` handlers
   * run at once, never two with the same key.
   */
  subscribe<T = unknown>(topic: string, handler: Handler<T>, options?: NatsSubscribeOptions): Promise<Subscription>;
  async subscribe(filter: string, handler: Handler<never>, options: NatsSubscribeOptions = {}): Promise<Subscription> {
    const js = this.#js;
    const jsm = this.#jsm;
    if (this.#phase !== 'open' || !js || !jsm) throw new ConnectionError(`cannot subscribe to ${filter}: nats broker is not connected`);
    const subject = filterSubject(filter);
    const { group } = options;
    if (group !== undefined) groupName(group);
    const policy = deliverPolicy(options.deliverPolicy);
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new ConfigurationError(`concurrency must be a whole number >= 1, got ${concurrency}`);
    const stream = await streamFor(jsm, filter, subject);
    const deadLetter = MessagePipeline.deadLetterVia((topic, body, publishOptions) => this.#publish(topic, body, publishOptions));
    // Requests (a `reply-to` header) are answered by a core-NATS publish to that subject.
    const consumer = this.#pipeline.consumer(filter, handler, options, deadLetter, this.#reply);
    const name = group === undefined ? `kt_${randomUUID().replaceAll('-', '').slice(0, 16)}` : durableName(group, subject);
    const member = new Member(
      { stream, name, durable: group !== undefined, filterSubject: subject, deliverPolicy: policy },
      { options: this.#options, js, jsm, report: this.#reportError },
      consumer,
      concurrency,
    );
    try {
      await member.start();
    } catch (error) {
      await member.stopIntake(0);
      member.release();
      if (error instanceof SubscribeError || error instanceof ConfigurationError) throw error;
      throw new SubscribeError(filter, `cannot subscribe to ${filter} (stream ${stream}): ${describeError(error, this.#options.secrets)}`, {
        cause: error,
        retriable: true,
      });
    }
    this.#members.add(member);
    const engine = member.engine;
    return loadedSubscription({
      topic: filter,
      group,
      load: engine,
      unsubscribe: () => this.#unsubscribe(member),
    });
  }

  /**
   * A group's member stops pulling and gives what it had not started back
   * (`stop`: the durable keeps it for the other members and the next
   * subscription). A subscription without a group handles what it received
   * (`finish`: nobody else would get it) and deletes its consumer.
   */
  async #unsubscribe(member: Member): Promise<void> {
    if (!this.#members.delete(member)) return;
    if (member.spec.durable) {
      await Promise.all([member.engine.stop(this.#pipeline.drainTimeoutMs), member.stopIntake(this.#options.connectTimeoutMs)]);
    } else {
      await member.stopIntake(this.#options.connectTimeoutMs);
      await member.engine.finish(this.#pipeline.drainTimeoutMs);
    }
    member.release();
    await member.removeEphemeral();
  }
}

/**
 * The durable consumer of a group for a subject: the group's name and a short
 * hash of the subject filter (`orders_1a2b3c4d`), so that one group may
 * subscribe to several subjects of a stream.
 */
export function durableName(group: string, subject: string): string {
  return `${group}_${createHash('sha256').update(subject).digest('hex').slice(0, 8)}`;
}

/** Bytes of the header block nats.js writes (`NATS/1.0`, one `name: value` line each, a blank line). */
function headerBytes(headers: Record<string, string>, msgId: string | undefined): number {
  let size = 12;
  for (const name in headers) size += Buffer.byteLength(name) + Buffer.byteLength(headers[name] ?? '') + 4;
  if (msgId !== undefined) size += 'Nats-Msg-Id'.length + Buffer.byteLength(msgId) + 4;
  return size;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
