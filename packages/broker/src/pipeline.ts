import { randomUUID } from 'node:crypto';
import type { MeterProvider, TextMapPropagator, TracerProvider } from '@opentelemetry/api';
import type { CodecName, Handler, PublishOptions, SubscribeOptions } from './broker.js';
import { CodecRegistry } from './codec/registry.js';
import { BrokerError, ConfigurationError, PublishError } from './errors.js';
import { HEADER, type Headers, type Message } from './message.js';
import { deadLetter, type DeadLetterPublish } from './middleware/dead-letter.js';
import type { ErrorReporter } from './middleware/recover.js';
import { decode } from './middleware/decode.js';
import { metricsConsumer, metricsPublisher } from './middleware/metrics.js';
import type { Middleware, OutgoingMessage, PublishFn, PublishMiddleware } from './middleware/middleware.js';
import { chain, chainPublish } from './middleware/middleware.js';
import { captureReply, reply, type ReplyPublish } from './middleware/reply.js';
import { retry } from './middleware/retry.js';
import { timeout } from './middleware/timeout.js';
import { tracingConsumer, tracingPublisher } from './middleware/tracing.js';
import { validation } from './middleware/validation.js';
import { type SlotContext, YIELD_SLOT, type YieldSlot } from './engine/slot.js';
import { errorText } from './text.js';

/** Options every broker accepts, whatever its transport. */
export interface CommonBrokerOptions {
  /** Codecs for publish and receive. Default: a registry with json, text, bytes and msgpack. */
  codecs?: CodecRegistry;
  /** Codec used when publish or subscribe options name none. Default `json`. */
  defaultCodec?: CodecName;
  /** OpenTelemetry spans (`send`/`process`). Default on, using the global tracer provider. */
  tracing?: boolean | { tracerProvider?: TracerProvider; propagator?: TextMapPropagator };
  /** OpenTelemetry `messaging.*` metrics. Default on, using the global meter provider. */
  metrics?: boolean | { meterProvider?: MeterProvider };
  /** Subscribe-side middleware, run inside tracing and metrics, outside retry and dead-letter. */
  middleware?: Middleware[];
  /** Publish-side middleware, run inside tracing and metrics, after encoding. */
  publishMiddleware?: PublishMiddleware[];
  /** How long `disconnect()` waits for in-flight handlers. Default 10,000 ms. */
  drainTimeoutMs?: number;
  /**
   * Give every publish without a `message-id` header a random UUID one (then
   * `Message.id` and the `messaging.message.id` span attribute). Default off: on
   * MQTT 5 the extra user property costs more per message than the rest of the
   * transport. Set the header yourself where you need a business id.
   */
  messageIds?: boolean;
  /**
   * Receives failures that no caller can be told of: a failed message that the
   * dead-letter topic refused for good and that was therefore dropped
   * (`DeadLetterError`, naming its topic, partition, offset and key). Default:
   * one line on stderr through `console.error`.
   */
  onError?: ErrorReporter;
}

/** The default `onError`: one bounded line on stderr. */
const reportToStderr: ErrorReporter = (error) => console.error(`ktransport: ${errorText(error, 2_048)}`);

/** Publish options when the caller gave none: shared, never written to. */
const NO_OPTIONS: PublishOptions = Object.freeze({});

/** Errors of the library pass through; anything else a publish met becomes a retriable PublishError. */
function asPublishError(topic: string, error: unknown): BrokerError {
  if (error instanceof BrokerError) return error;
  return new PublishError(topic, `publish to ${topic} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error, retriable: true });
}

/** A received message before decoding: `body` holds the bytes from the wire. */
export type RawMessage = Message<Uint8Array>;

/** Processes one received message; resolves to acknowledge, rejects to hand it back for redelivery. */
export type Consumer = (message: RawMessage, signal: AbortSignal, yieldSlot?: YieldSlot) => Promise<void>;

/**
 * The transport-independent part of a broker, shared by composition: encoding and
 * publish middleware on the way out; tracing, metrics, user middleware,
 * dead-letter, retry, timeout, decoding and validation on the way in.
 */
export class MessagePipeline {
  readonly codecs: CodecRegistry;
  readonly defaultCodec: string;
  readonly drainTimeoutMs: number;
  readonly #messageIds: boolean;
  readonly #onError: ErrorReporter;
  readonly #consumerOuter: Middleware[] = [];
  readonly #publishOuter: PublishMiddleware[] = [];

  constructor(system: string, options: CommonBrokerOptions = {}) {
    this.codecs = options.codecs ?? new CodecRegistry();
    this.defaultCodec = options.defaultCodec ?? 'json';
    this.codecs.get(this.defaultCodec);
    this.drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
    this.#messageIds = options.messageIds ?? false;
    if (options.onError !== undefined && typeof options.onError !== 'function') throw new ConfigurationError('onError must be a function');
    const onError = options.onError ?? reportToStderr;
    // A throwing reporter must not turn a dropped message into a redelivery loop.
    this.#onError = (error, message, context) => {
      try {
        onError(error, message, context);
      } catch {
        // nothing more can be done with it
      }
    };
    if (!(this.drainTimeoutMs >= 0)) throw new ConfigurationError(`drainTimeoutMs must be >= 0, got ${options.drainTimeoutMs}`);
    if (options.tracing !== false) {
      const tracing = typeof options.tracing === 'object' ? options.tracing : {};
      this.#consumerOuter.push(tracingConsumer({ system, ...tracing }));
      this.#publishOuter.push(tracingPublisher({ system, ...tracing }));
    }
    if (options.metrics !== false) {
      const metrics = typeof options.metrics === 'object' ? options.metrics : {};
      this.#consumerOuter.push(metricsConsumer({ system, ...metrics }));
      this.#publishOuter.push(metricsPublisher({ system, ...metrics }));
    }
    this.#consumerOuter.push(...(options.middleware ?? []));
    this.#publishOuter.push(...(options.publishMiddleware ?? []));
  }

  /**
   * Builds the publish function of a broker around its transport `send`. The
   * payload handed to `send` is exactly the codec's bytes; metadata is in headers.
   */
  publisher<O extends PublishOptions>(send: PublishFn<O>): (topic: string, body: unknown, options?: O) => Promise<void> {
    const chained = chainPublish(this.#publishOuter, send);
    // Not an async function: a publish waiting for its acknowledgement holds one small callback
    // instead of a suspended function, which adds up with thousands of publishes in flight.
    return (topic, body, options = NO_OPTIONS as O) => {
      let sent: Promise<void>;
      try {
        sent = chained(this.encode(topic, body, options));
      } catch (error) {
        return Promise.reject(asPublishError(topic, error));
      }
      return sent.then(undefined, (error: unknown) => {
        throw asPublishError(topic, error);
      });
    };
  }

  /** Encodes a body with the chosen codec and fills in `content-type` (and `message-id` with `messageIds`). */
  encode<O extends PublishOptions>(topic: string, body: unknown, options: O): OutgoingMessage<O> {
    const codec = this.codecs.get(options.codec ?? this.defaultCodec);
    let payload: Uint8Array;
    try {
      payload = codec.encode(body);
    } catch (error) {
      throw new PublishError(topic, `cannot encode body for ${topic} with codec "${codec.name}": ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      });
    }
    const headers: Headers = { ...options.headers };
    // Bytes carry whatever content type the caller labelled them with (dead-letter keeps the original).
    if (codec.name !== 'bytes' || !headers[HEADER.contentType]) headers[HEADER.contentType] = codec.contentType;
    if (this.#messageIds) headers[HEADER.messageId] ??= randomUUID();
    return options.key === undefined ? { topic, payload, headers, options } : { topic, payload, headers, key: options.key, options };
  }

  /**
   * Builds the consumer for one subscription. `deadLetterPublish` sends bytes to
   * the dead-letter topic through the same broker. With `replyPublish` (the
   * same kind of function; `MessagePipeline.deadLetterVia` makes both), the
   * subscription answers requests: a message carrying `reply-to` gets its
   * handler's return value, or its failure, published there. A transport that
   * gives none leaves requests unanswered (its handlers' return values ignored).
   */
  consumer(filter: string, handler: Handler<never>, options: SubscribeOptions, deadLetterPublish: DeadLetterPublish, replyPublish?: ReplyPublish): Consumer {
    const inner: Middleware[] = [];
    if (options.deadLetter) inner.push(deadLetter(options.deadLetter, deadLetterPublish, this.#onError));
    if (replyPublish) inner.push(reply(this.codecs.get(options.codec ?? this.defaultCodec), replyPublish, this.#onError, options.replySchema));
    if (options.retry) inner.push(retry(options.retry));
    if (options.timeoutMs !== undefined) inner.push(timeout(options.timeoutMs));
    inner.push(decode(this.codecs, options.codec ?? this.defaultCodec));
    if (options.schema) inner.push(validation(options.schema));
    const run = chain(...this.#consumerOuter, ...inner)(replyPublish ? captureReply(handler as Handler<unknown>) : (handler as Handler<unknown>));
    const group = options.group;
    return (message, signal, yieldSlot) => {
      // The retry middleware gives the engine's slot back (yieldSlot) while it waits between attempts.
      const context: SlotContext =
        group === undefined
          ? { attempt: 1, filter, signal, payload: message.body, [YIELD_SLOT]: yieldSlot }
          : { attempt: 1, filter, group, signal, payload: message.body, [YIELD_SLOT]: yieldSlot };
      try {
        // Not an async function: a handler chain that settles synchronously costs no extra promise.
        // What the chain resolves with is of no use to the engine: only settling counts.
        return Promise.resolve(run(message, context)) as Promise<void>;
      } catch (error) {
        return Promise.reject(error);
      }
    };
  }

  /** Sends dead-letter bytes through `publish` with the bytes codec, keeping the original content type and key. */
  static deadLetterVia(publish: (topic: string, body: unknown, options: PublishOptions) => Promise<void>): DeadLetterPublish {
    return (topic, payload, headers, key) => publish(topic, payload, key === undefined ? { codec: 'bytes', headers } : { codec: 'bytes', headers, key });
  }
}
