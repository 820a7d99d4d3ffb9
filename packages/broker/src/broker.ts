import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { Headers, Message } from './message.js';

/** What a handler gets beside the message. */
export interface HandlerContext {
  /** 1 for the first attempt in this process, 2 for the first retry, ... */
  readonly attempt: number;
  /** The subscription's filter (may contain wildcards) and group. */
  readonly filter: string;
  readonly group?: string;
  /** Aborted when the handler timed out or the broker is shutting down past its drain time. */
  readonly signal: AbortSignal;
  /** The exact bytes received, before decoding. */
  readonly payload: Uint8Array;
}

/**
 * Resolving acknowledges the message; throwing runs the retry policy, then
 * dead-letter or redelivery. The value it returns or resolves with (`R`) is the
 * reply when the message is a request (it carries the `reply-to` header, see
 * `Requester`); a fire-and-forget handler returns nothing, and a value returned
 * for a message that is not a request is ignored.
 */
export type Handler<T = unknown, R = unknown> = (message: Message<T>, context: HandlerContext) => R | Promise<R>;

/** Exponential backoff between in-process attempts: delay = min(initialDelayMs * multiplier^(n-1), maxDelayMs). */
export interface RetryPolicy {
  /** Total attempts including the first; 1 disables retries. */
  attempts: number;
  initialDelayMs?: number;
  maxDelayMs?: number;
  multiplier?: number;
}

/**
 * Codec names that options accept: the built-in codecs and `protobuf:<message
 * type>` (the default name of `protobufCodec`). A codec of your own becomes a
 * valid name by declaration merging:
 *
 * ```ts
 * declare module '@ktransport/broker' {
 *   interface CodecNames { yaml: true }
 * }
 * ```
 */
export interface CodecNames {
  json: true;
  text: true;
  bytes: true;
  msgpack: true;
}

/** A codec name for options: one of `CodecNames`, or `protobuf:<message type>`. */
export type CodecName = keyof CodecNames | `protobuf:${string}`;

/**
 * Subscribe options that transport packages add by declaration merging (MQTT
 * `qos`, Kafka `fromBeginning`, ...), so that `@Subscribe`, `BrokerServer` and
 * the `Broker` interface check them like the core's own: a misspelt or
 * mistyped option is a compile error. Importing a transport package brings its
 * options in.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- the target of the transports' declaration merging
export interface TransportSubscribeOptions {}

/** Publish options that transport packages add by declaration merging (MQTT `qos`, `retain`; Kafka `partition`). */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- the target of the transports' declaration merging
export interface TransportPublishOptions {}

/** The subscribe options of the core alone, without any transport's; a transport's own options type extends it. */
export interface BaseSubscribeOptions<S extends StandardSchemaV1 = StandardSchemaV1> {
  /** Consumers in one group share the messages (Kafka consumer group, MQTT `$share/{group}/`). */
  group?: string;
  /** Messages handled at once by this subscription (per partition order is kept on Kafka). Default 1. */
  concurrency?: number;
  /** Any Standard Schema (zod, valibot, arktype): the body is validated and typed as its output. */
  schema?: S;
  /**
   * Any Standard Schema of the reply, for a subscription that answers requests.
   * The value the handler returns for a request is validated with it and its
   * output is what gets encoded and sent. A value that fails it is not sent: the
   * requester gets an error reply (a `RemoteError` with `errorType`
   * `VALIDATION_ERROR`) and the `ValidationError` goes to the broker's `onError`,
   * as the responder's bug. Fire-and-forget messages and `undefined` returns (no
   * reply) are not validated. `@Subscribe` checks the method's return type against
   * the schema's input; `@ktransport/asyncapi` documents it as the operation's reply.
   */
  replySchema?: StandardSchemaV1;
  /**
   * Codec used when a message carries no `content-type` header. Default: the
   * broker's default codec. `bytes` hands over the raw payload whatever its content type.
   */
  codec?: CodecName;
  /** In-process retries before the message is dead-lettered or handed back for redelivery. */
  retry?: RetryPolicy;
  /** Topic that receives a message whose last attempt failed, with headers naming the reason. */
  deadLetter?: string;
  /** Time limit for one attempt; exceeding it fails the attempt with a TimeoutError. */
  timeoutMs?: number;
}

/** Options of `subscribe` and `@Subscribe`: the core's and those of the transport packages imported. */
export interface SubscribeOptions<S extends StandardSchemaV1 = StandardSchemaV1> extends BaseSubscribeOptions<S>, TransportSubscribeOptions {}

/** The publish options of the core alone; a transport's own options type extends it. */
export interface BasePublishOptions {
  headers?: Headers;
  /** Record key (Kafka partitioning; carried as a header on transports without keys). */
  key?: string;
  /** Codec name; default: the broker's default codec (json). */
  codec?: CodecName;
}

/** Options of `publish`: the core's and those of the transport packages imported. */
export interface PublishOptions extends BasePublishOptions, TransportPublishOptions {}

/** What `subscribe` resolves with: the subscription's filter and group, and the way to end it. */
export interface Subscription {
  readonly topic: string;
  readonly group?: string;
  /** Stops delivery to this handler; in-flight handlers finish first. */
  unsubscribe(): Promise<void>;
}

/**
 * Optional ability of a subscription: how much work it holds. Every broker of
 * ktransport returns subscriptions that have it (its delivery engine's load).
 */
export interface SubscriptionLoad {
  /** Handlers running now. */
  readonly running: number;
  /** Messages received and waiting for a handler (failed ones waiting to run again included). */
  readonly queued: number;
}

/**
 * A message broker client. `publish` resolves only after the transport accepted
 * the message and rejects with a typed error otherwise.
 */
export interface Broker {
  /** Short transport name used in spans and metrics (`messaging.system`): `mqtt`, `kafka`, `memory`. */
  readonly system: string;
  /** Connects; rejects with a ConnectionError (AuthenticationError, CertificateError) instead of retrying forever. */
  connect(): Promise<void>;
  /** Stops intake, drains in-flight handlers (bounded by the broker's drain timeout), then closes. */
  disconnect(): Promise<void>;
  /** Encodes `body` and sends it; resolves once the transport accepted it, rejects with a typed error otherwise. */
  publish<T = unknown>(topic: string, body: T, options?: PublishOptions): Promise<void>;
  /** Delivers messages matching `topic` to `handler`, typed and validated by `options.schema`; acknowledged when the handler resolves. */
  subscribe<S extends StandardSchemaV1>(
    topic: string,
    handler: Handler<StandardSchemaV1.InferOutput<S>>,
    options: SubscribeOptions<S> & { schema: S },
  ): Promise<Subscription>;
  /** Delivers messages matching `topic` to `handler`, the body decoded by its content type; acknowledged when the handler resolves. */
  subscribe<T = unknown>(topic: string, handler: Handler<T>, options?: SubscribeOptions): Promise<Subscription>;
}

/** Options of `request`: the publish options of the request, and how to wait for and read its reply. */
export interface RequestOptions<S extends StandardSchemaV1 = StandardSchemaV1> extends PublishOptions {
  /** How long to wait for the reply, from the call on; then the request rejects with a TimeoutError. Default 30,000 ms. */
  timeoutMs?: number;
  /** Any Standard Schema: the reply's body is validated and typed as its output; a reply that fails it rejects with a ValidationError. */
  schema?: S;
  /** Codec for a reply that carries no `content-type` header (a foreign responder). Default: the broker's default codec. */
  replyCodec?: CodecName;
}

/**
 * Optional ability: request–reply. `request` publishes `body` to `topic` with
 * the `reply-to` and `correlation-id` headers and resolves with the reply
 * message, or rejects with a TimeoutError, a RemoteError (the responder's
 * handler failed: its error type and message), or a ConfigurationError where
 * the transport cannot carry requests (MQTT 3.1.1). A subscriber answers by
 * returning (or resolving with) a value other than `undefined` from its handler.
 */
export interface Requester {
  /** Sends a request and resolves with the reply, its body validated and typed by `options.schema`. */
  request<S extends StandardSchemaV1>(
    topic: string,
    body: unknown,
    options: RequestOptions<S> & { schema: S },
  ): Promise<Message<StandardSchemaV1.InferOutput<S>>>;
  /** Sends a request and resolves with the reply, its body decoded by its content type. */
  request<T = unknown>(topic: string, body: unknown, options?: RequestOptions): Promise<Message<T>>;
}

/** Whether `broker` has the request–reply ability (it may still refuse a request for its configuration, as MQTT 3.1.1 does). */
export function supportsRequest<B extends Broker>(broker: B): broker is B & Requester {
  return typeof (broker as Partial<Requester>).request === 'function';
}

/** Connection state, for health checks. */
export type ConnectionState = 'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** Optional ability: a broker that reports its connection state. */
export interface ObservableConnection {
  readonly state: ConnectionState;
  /** Calls the listener on every change; returns a function that removes it. */
  onStateChange(listener: (state: ConnectionState) => void): () => void;
}
