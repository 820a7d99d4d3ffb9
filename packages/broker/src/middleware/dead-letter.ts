import type { HandlerContext } from '../broker.js';
import { errorType } from '../errors.js';
import type { Headers, Message } from '../message.js';
import type { Middleware } from './middleware.js';
import { HandlerFailedError } from './retry.js';

/** Headers a dead-lettered message carries beside its original ones. */
export const DEAD_LETTER_HEADER = {
  originalTopic: 'x-dead-letter-topic',
  group: 'x-dead-letter-group',
  error: 'x-dead-letter-error',
  errorType: 'x-dead-letter-error-type',
  attempts: 'x-dead-letter-attempts',
  failedAt: 'x-dead-letter-failed-at',
} as const;

/** Sends the original bytes to the dead-letter topic; must resolve only once the transport accepted them. */
export type DeadLetterPublish = (topic: string, payload: Uint8Array, headers: Headers) => Promise<void>;

/**
 * After the last attempt failed, publishes the original payload and headers to
 * `topic`, adding headers that name the original topic, the error and the
 * attempt count, and then acknowledges. If that publish fails, the error
 * propagates and the message is redelivered: it is never lost.
 */
export function deadLetter(topic: string, publish: DeadLetterPublish): Middleware {
  return (next) => async (message, context) => {
    try {
      await next(message, context);
    } catch (error) {
      await publish(topic, context.payload, deadLetterHeaders(message, context, error));
    }
  };
}

function deadLetterHeaders(message: Message, context: HandlerContext, error: unknown): Headers {
  const failure = error instanceof HandlerFailedError ? error : undefined;
  const cause = failure ? failure.cause : error;
  const headers: Headers = {
    ...message.headers,
    [DEAD_LETTER_HEADER.originalTopic]: message.topic,
    [DEAD_LETTER_HEADER.error]: cause instanceof Error ? cause.message : String(cause),
    [DEAD_LETTER_HEADER.errorType]: errorType(cause),
    [DEAD_LETTER_HEADER.attempts]: String(failure?.attempts ?? context.attempt),
    [DEAD_LETTER_HEADER.failedAt]: new Date().toISOString(),
  };
  if (context.group) headers[DEAD_LETTER_HEADER.group] = context.group;
  return headers;
}
