import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { Handler, HandlerContext } from '../broker.js';
import type { Codec } from '../codec/codec.js';
import { StoppingError } from '../engine/slot.js';
import { errorType } from '../errors.js';
import { HEADER, type Headers, type Message } from '../message.js';
import { validated } from '../schema.js';
import { errorText, headerText } from '../text.js';
import type { DeadLetterPublish } from './dead-letter.js';
import type { Middleware } from './middleware.js';
import type { ErrorReporter } from './recover.js';
import { HandlerFailedError } from './retry.js';

/**
 * Headers of request–reply. A request carries `reply-to` (the topic the reply
 * goes to) and `correlation-id`; its reply carries the same `correlation-id`,
 * and an error reply also `x-reply-error-type` and `x-reply-error` (bounded,
 * escaped, never a stack). MQTT 5 carries `reply-to` and `correlation-id` as
 * its Response Topic and Correlation Data properties.
 */
export const REPLY_HEADER = {
  replyTo: 'reply-to',
  correlationId: 'correlation-id',
  errorType: 'x-reply-error-type',
  error: 'x-reply-error',
} as const;

/** Bound of the `x-reply-error` text, in UTF-8 bytes. */
export const REPLY_ERROR_MAX_BYTES = 1_024;

/** Sends reply bytes (with their content type in the headers) through the responder's broker; resolves once accepted. */
export type ReplyPublish = DeadLetterPublish;

/** Where the reply middleware waits for the handler's return value (not part of the public context). */
const REPLY_SLOT: unique symbol = Symbol('ktransport.reply');

interface ReplySlot {
  value: unknown;
}

type ReplyContext = HandlerContext & { readonly [REPLY_SLOT]?: ReplySlot };

/**
 * Wraps the user's handler so that its return value reaches the reply
 * middleware of the same delivery; innermost, around the handler itself.
 */
export function captureReply(handler: Handler<unknown>): Handler<unknown> {
  return (message, context) => {
    const slot = (context as ReplyContext)[REPLY_SLOT];
    const result = handler(message, context);
    if (slot === undefined) return result;
    if (typeof (result as PromiseLike<unknown> | undefined)?.then === 'function') {
      return Promise.resolve(result).then((value) => void (slot.value = value));
    }
    slot.value = result;
    return undefined;
  };
}

/**
 * Answers requests: when a message carries `reply-to`, the value its handler
 * returned (other than `undefined`) is encoded with `codec` and published to
 * that topic with the request's `correlation-id`. When the handler fails for
 * good (after the retry policy; decode and validation errors included), an
 * error reply goes there instead, and the request is acknowledged: the caller
 * has been told, so it is neither redelivered nor dead-lettered. It sits inside
 * tracing (the reply's send span is a child of the request's process span) and
 * outside retry. A reply that cannot be sent is reported to `report` (the
 * caller times out); the request is not run again for it. Shutdown is not
 * failure: the request goes back to the broker unanswered, as any message.
 * Messages without `reply-to` pass through untouched. With `replySchema`, the
 * return value is validated before it is encoded and the schema's output is
 * sent; a value that fails it is the responder's bug: it goes to `report` as a
 * ValidationError and the requester gets that error as its error reply.
 */
export function reply(codec: Codec, publish: ReplyPublish, report: ErrorReporter, replySchema?: StandardSchemaV1): Middleware {
  // Not an async function: a message without `reply-to` goes through with no extra promise or tick, as
  // it did before request–reply existed (a memory broker's handler that dead-letters keeps its timing).
  return (next) => (message, context) => {
    const replyTo = message.headers[REPLY_HEADER.replyTo];
    if (replyTo === undefined || replyTo === '') return next(message, context);
    return answer(next, message, context, replyTo);
  };

  async function answer(next: Handler<unknown>, message: Message, context: HandlerContext, replyTo: string): Promise<void> {
    const headers: Headers = {};
    const correlationId = message.headers[REPLY_HEADER.correlationId];
    if (correlationId !== undefined) headers[REPLY_HEADER.correlationId] = correlationId;
    const slot: ReplySlot = { value: undefined };
    let payload: Uint8Array | undefined;
    try {
      await next(message, { ...context, [REPLY_SLOT]: slot } as ReplyContext);
      if (slot.value === undefined) return;
      payload = codec.encode(replySchema === undefined ? slot.value : await validReply(replySchema, slot.value, message, context));
      headers[HEADER.contentType] = codec.contentType;
    } catch (error) {
      if (error instanceof StoppingError || context.signal.aborted) throw error;
      const cause = error instanceof HandlerFailedError ? error.cause : error;
      headers[REPLY_HEADER.errorType] = headerText(errorType(cause), 200);
      headers[REPLY_HEADER.error] = errorText(cause, REPLY_ERROR_MAX_BYTES);
      payload = new Uint8Array(0);
    }
    try {
      await publish(replyTo, payload, headers, undefined);
    } catch (refused) {
      report(refused, message, context);
    }
  }

  /** The schema's output for `value`; a value that fails it is reported and thrown as a ValidationError. */
  async function validReply(schema: StandardSchemaV1, value: unknown, message: Message, context: HandlerContext): Promise<unknown> {
    try {
      return await validated(schema, value, `the reply to ${message.topic}`);
    } catch (error) {
      report(error, message, context);
      throw error;
    }
  }
}
