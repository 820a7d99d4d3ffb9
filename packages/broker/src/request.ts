import { randomUUID } from 'node:crypto';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { Handler, PublishOptions, RequestOptions, SubscribeOptions, Subscription } from './broker.js';
import type { CodecRegistry } from './codec/registry.js';
import { BrokerError, ConfigurationError, ConnectionError, DecodeError, RemoteError, TimeoutError } from './errors.js';
import { HEADER, type Message } from './message.js';
import { REPLY_ERROR_MAX_BYTES, REPLY_HEADER } from './middleware/reply.js';
import { validated } from './schema.js';
import { errorText, headerText } from './text.js';

/** Default wait for a reply. */
const DEFAULT_TIMEOUT_MS = 30_000;

/** What the requester needs of its broker: its own publish and subscribe. */
export interface RequestWire {
  /** The broker's public publish: sends the request (its checks and tracing included). */
  publish(topic: string, body: unknown, options: PublishOptions): Promise<void>;
  /** The broker's public subscribe: takes the reply topic, with the `bytes` codec (the requester decodes each reply itself). */
  subscribe(topic: string, handler: Handler<Uint8Array>, options: SubscribeOptions): Promise<Subscription>;
}

/** Options of a `RequestClient`. */
export interface RequestClientOptions {
  /** The broker's codecs, to read replies with. */
  codecs: CodecRegistry;
  /** Codec for a reply without a `content-type` header when the request names none. */
  defaultCodec: string;
  /** A new reply topic, unique to this client and this connection (`ktransport/reply/<uuid>`). */
  replyTopic: () => string;
  /** Extra options of the reply subscription (MQTT `qos`). */
  subscribeOptions?: SubscribeOptions;
}

interface Pending {
  readonly resolve: (message: Message) => void;
  readonly reject: (error: unknown) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * The requester side of request–reply, shared by composition: a reply topic
 * of its own, subscribed on the first request and forgotten on `close()` (a
 * reconnected or restarted requester has a new one), and a map from
 * correlation id (a random UUID per request) to the waiting caller. A reply
 * whose correlation id is not waited for (late, duplicated, foreign) is
 * dropped, never handed to another caller.
 */
export class RequestClient {
  readonly #wire: RequestWire;
  readonly #options: RequestClientOptions;
  readonly #pending = new Map<string, Pending>();
  #subscribed: Promise<string> | undefined;
  #generation = 0;

  constructor(wire: RequestWire, options: RequestClientOptions) {
    this.#wire = wire;
    this.#options = options;
  }

  /** Requests waiting for their reply. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Publishes the request and resolves with its reply; see `Requester.request`. */
  async request(topic: string, body: unknown, options: RequestOptions = {}): Promise<Message> {
    const { timeoutMs = DEFAULT_TIMEOUT_MS, schema, replyCodec, ...publishOptions } = options;
    if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) throw new ConfigurationError(`timeoutMs must be a finite number > 0, got ${timeoutMs}`);
    if (replyCodec !== undefined) this.#options.codecs.get(replyCodec);
    const started = Date.now();
    const generation = this.#generation;
    const replyTopic = await this.#replyTopic();
    if (generation !== this.#generation) throw new ConnectionError(`the broker disconnected before the request to ${topic} was sent`);
    const id = randomUUID();
    const reply = new Promise<Message>((resolve, reject) => {
      const left = Math.max(0, timeoutMs - (Date.now() - started));
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new TimeoutError(`no reply to the request to ${topic} within ${timeoutMs} ms`));
      }, left);
      this.#pending.set(id, { resolve, reject, timer });
    });
    // Settled before anyone awaits it when the publish fails or the time runs out meanwhile: not an unhandled rejection.
    reply.catch(() => undefined);
    // Waiting before publishing: a reply may come back before the publish is acknowledged.
    const headers = { ...publishOptions.headers, [REPLY_HEADER.replyTo]: replyTopic, [REPLY_HEADER.correlationId]: id };
    try {
      await this.#wire.publish(topic, body, { ...publishOptions, headers });
    } catch (error) {
      this.#settle(id)?.reject(error);
    }
    const message = await reply;
    return this.#read(message, topic, schema, replyCodec);
  }

  /** Rejects every waiting request with `error` and forgets the reply topic (the next request subscribes a new one). */
  close(error: BrokerError = new ConnectionError('the broker disconnected before the reply arrived')): void {
    this.#generation++;
    this.#subscribed = undefined;
    for (const id of [...this.#pending.keys()]) this.#settle(id)?.reject(error);
  }

  #settle(id: string): Pending | undefined {
    const pending = this.#pending.get(id);
    if (pending === undefined) return undefined;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    return pending;
  }

  #replyTopic(): Promise<string> {
    if (this.#subscribed) return this.#subscribed;
    const topic = this.#options.replyTopic();
    const subscribed = this.#wire
      .subscribe(topic, (message) => void this.#settle(message.headers[REPLY_HEADER.correlationId] ?? '')?.resolve(message), {
        ...this.#options.subscribeOptions,
        codec: 'bytes',
      })
      .then(() => topic);
    this.#subscribed = subscribed;
    // A failed subscribe is not kept: the next request tries again.
    subscribed.catch(() => {
      if (this.#subscribed === subscribed) this.#subscribed = undefined;
    });
    return subscribed;
  }

  /** The reply as the caller gets it: an error reply rejects, a body is decoded and validated. */
  async #read(message: Message, topic: string, schema: StandardSchemaV1 | undefined, replyCodec: string | undefined): Promise<Message> {
    const type = message.headers[REPLY_HEADER.errorType];
    if (type !== undefined) {
      throw new RemoteError(topic, headerText(type, 200), headerText(message.headers[REPLY_HEADER.error] ?? '', REPLY_ERROR_MAX_BYTES));
    }
    const payload = message.body as Uint8Array;
    const contentType = message.headers[HEADER.contentType];
    let body: unknown;
    try {
      const codec = contentType ? this.#options.codecs.forContentType(contentType) : this.#options.codecs.get(replyCodec ?? this.#options.defaultCodec);
      body = codec.decode(payload);
    } catch (error) {
      if (error instanceof BrokerError) throw error;
      throw new DecodeError(`cannot decode the ${payload.byteLength}-byte reply to the request to ${headerText(topic, 200)}: ${errorText(error, 300)}`, {
        cause: error,
      });
    }
    if (schema) body = await validated(schema, body, `the reply to ${topic}`);
    return { ...message, body };
  }
}
