import type { RetryPolicy } from '../broker.js';
import { BrokerError, ConfigurationError, isRetriable } from '../errors.js';
import { withoutSlot } from '../engine/slot.js';
import type { Middleware } from './middleware.js';

/** The last attempt failed; `cause` is its error, `attempts` how many ran. */
export class HandlerFailedError extends BrokerError {
  override readonly code = 'HANDLER_FAILED';
  readonly attempts: number;
  constructor(attempts: number, cause: unknown) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    super(`handler failed after ${attempts} attempt(s): ${detail}`, { cause, retriable: isRetriable(cause) });
    this.attempts = attempts;
  }
}

/** The wait before attempt `attempt + 1`, after `attempt` failures. */
export function backoffDelay(policy: RetryPolicy, attempt: number): number {
  const initial = policy.initialDelayMs ?? 100;
  const multiplier = policy.multiplier ?? 2;
  const max = policy.maxDelayMs ?? 30_000;
  return Math.min(initial * multiplier ** (attempt - 1), max);
}

/**
 * Runs the handler up to `policy.attempts` times with exponential backoff. A
 * non-retriable error (decode, validation) stops at once. When the attempts run
 * out, throws HandlerFailedError carrying the count for the dead-letter headers.
 * Waiting stops early if the context's signal aborts (shutdown), and no attempt
 * follows. Inside a broker, the wait gives the delivery engine's handler slot
 * back, so a failing message does not hold up other keys while it backs off.
 */
export function retry(policy: RetryPolicy): Middleware {
  if (!Number.isInteger(policy.attempts) || policy.attempts < 1) {
    throw new ConfigurationError(`retry.attempts must be a whole number >= 1, got ${policy.attempts}`);
  }
  return (next) => async (message, context) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await next(message, attempt === 1 ? context : { ...context, attempt });
      } catch (error) {
        if (attempt >= policy.attempts || !isRetriable(error) || context.signal.aborted) {
          throw new HandlerFailedError(attempt, error);
        }
        // Between attempts the delivery holds no handler slot: other keys run meanwhile.
        await withoutSlot(context, sleep(backoffDelay(policy, attempt), context.signal));
        if (context.signal.aborted) throw new HandlerFailedError(attempt, error);
      }
    }
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
