import type { HandlerContext } from '../broker.js';
import type { Message } from '../message.js';
import type { Middleware } from './middleware.js';

/** Receives an error about a message that no caller can be told of (a dropped or undeliverable message). */
export type ErrorReporter = (error: unknown, message: Message, context: HandlerContext) => void;

/**
 * Turns a failure into an acknowledgement after reporting it: the message is
 * dropped, never silently. Use it where redelivery is worse than loss; prefer a
 * dead-letter topic where the message must be kept.
 */
export function recover(report: ErrorReporter): Middleware {
  return (next) => async (message, context) => {
    try {
      await next(message, context);
    } catch (error) {
      report(error, message, context);
    }
  };
}
