import { ConfigurationError, TimeoutError } from '../errors.js';
import type { Middleware } from './middleware.js';

/**
 * Fails an attempt that runs longer than `ms` with a retriable TimeoutError and
 * aborts `context.signal` so that a cooperative handler can stop its work.
 */
export function timeout(ms: number): Middleware {
  if (!(ms > 0)) throw new ConfigurationError(`timeoutMs must be > 0, got ${ms}`);
  return (next) => (message, context) => {
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(context.signal.reason);
    context.signal.addEventListener('abort', onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new TimeoutError(`handler for ${message.topic} did not finish within ${ms} ms`);
        controller.abort(error);
        reject(error);
      }, ms);
    });
    const run = Promise.resolve().then(() => next(message, { ...context, signal: controller.signal }));
    return Promise.race([run, expired]).finally(() => {
      clearTimeout(timer);
      context.signal.removeEventListener('abort', onAbort);
    });
  };
}
