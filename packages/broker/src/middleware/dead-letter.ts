import type { HandlerContext } from '../broker.js';
import { StoppingError } from '../engine/slot.js';
import { BrokerError, errorType, isRetriable } from '../errors.js';
import type { Headers, Message } from '../message.js';
import { errorText, headerText } from '../text.js';
import type { Middleware } from './middleware.js';
import type { ErrorReporter } from './recover.js';
import { HandlerFailedError } from './retry.js';

/** Headers a dead-lettered message carries beside its original ones. */
export const DEAD_LETTER_HEADER = {
  originalTopic: 'x-dead-letter-topic',
  group: 'x-dead-letter-group',
  error: 'x-dead-letter-error',
  errorType: 'x-dead-letter-error-type',
  attempts: 'x-dead-letter-attempts',
  failedAt: 'x-dead-letter-failed-at',
  /** Set when the broker refused the copy with its original headers, and it was sent with these headers alone. */
  headersDropped: 'x-dead-letter-headers-dropped',
} as const;

/** Bound of the `x-dead-letter-error` text, in UTF-8 bytes. */
export const DEAD_LETTER_ERROR_MAX_BYTES = 1_024;

/**
 * Sends the original bytes to the dead-letter topic, keeping the record key;
 * must resolve only once the transport accepted them.
 */
export type DeadLetterPublish = (topic: string, payload: Uint8Array, headers: Headers, key: string | undefined) => Promise<void>;

/** A failed message could not be dead-lettered because the broker refused the copy for good; it was dropped and reported. */
export class DeadLetterError extends BrokerError {
  override readonly code = 'DEAD_LETTER_FAILED';
  /** The dead-letter topic that refused the copy. */
  readonly deadLetterTopic: string;
  /** The topic the failed message came from. */
  readonly originalTopic: string;
  constructor(deadLetterTopic: string, message: Message, cause: unknown) {
    const where = [
      message.partition === undefined ? '' : `partition ${message.partition}`,
      message.offset === undefined ? '' : `offset ${message.offset}`,
      message.key === undefined ? '' : `key ${headerText(message.key, 200)}`,
    ]
      .filter(Boolean)
      .join(', ');
    super(
      `a message from ${headerText(message.topic, 200)}${where ? ` (${where})` : ''} failed and could not be dead-lettered to ${deadLetterTopic}: ${errorText(cause, 500)}; it was dropped`,
      { cause, retriable: false },
    );
    this.deadLetterTopic = deadLetterTopic;
    this.originalTopic = message.topic;
  }
}

/**
 * After the last attempt failed, publishes the original payload, key and headers
 * to `topic`, adding headers that name the original topic, the error and the
 * attempt count, and then acknowledges. The reason headers are bounded and safe
 * for every wire, whatever the error quoted.
 *
 * If the dead-letter publish fails in a way that may pass (the broker is down),
 * the error propagates and the message is redelivered: it is never lost. If the
 * broker refuses the copy for good (too large for the dead-letter topic, a
 * header invalid there), the copy is sent again with the reason headers alone;
 * if that is refused for good too, the message is dropped and `onUndeliverable`
 * receives a DeadLetterError naming it (without `onUndeliverable`, the error
 * propagates and the message is redelivered).
 */
export function deadLetter(topic: string, publish: DeadLetterPublish, onUndeliverable?: ErrorReporter): Middleware {
  return (next) => async (message, context) => {
    try {
      await next(message, context);
    } catch (error) {
      // Shutdown, not failure: the message goes back to the broker for redelivery, not to the dead-letter topic.
      if (error instanceof StoppingError || context.signal.aborted) throw error;
      const reason = reasonHeaders(message, context, error);
      try {
        await publish(topic, context.payload, { ...message.headers, ...reason }, message.key);
        return;
      } catch (refused) {
        if (isRetriable(refused) || !onUndeliverable) throw refused;
      }
      try {
        await publish(topic, context.payload, { ...reason, [DEAD_LETTER_HEADER.headersDropped]: 'true' }, message.key);
      } catch (refused) {
        if (isRetriable(refused)) throw refused;
        onUndeliverable(new DeadLetterError(topic, message, refused), message, context);
      }
    }
  };
}

function reasonHeaders(message: Message, context: HandlerContext, error: unknown): Headers {
  const failure = error instanceof HandlerFailedError ? error : undefined;
  const cause = failure ? failure.cause : error;
  const headers: Headers = {
    [DEAD_LETTER_HEADER.originalTopic]: headerText(message.topic, 65_535),
    [DEAD_LETTER_HEADER.error]: errorText(cause, DEAD_LETTER_ERROR_MAX_BYTES),
    [DEAD_LETTER_HEADER.errorType]: headerText(errorType(cause), 200),
    [DEAD_LETTER_HEADER.attempts]: String(failure?.attempts ?? context.attempt),
    [DEAD_LETTER_HEADER.failedAt]: new Date().toISOString(),
  };
  if (context.group) headers[DEAD_LETTER_HEADER.group] = headerText(context.group, 1_024);
  return headers;
}
