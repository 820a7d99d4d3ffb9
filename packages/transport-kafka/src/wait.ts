import type { InFlight } from '@ktransport/broker';

/** What became of a message's handling: done, or an error that means delivering it again. */
export type Outcome = 'ok' | { readonly error: unknown };

const ignore = (): void => undefined;

/**
 * The callbacks of one partition loop, made once per batch: the handler in hand
 * settles the loop's current wait through them, and `stop` can wake the loop
 * with 'abandoned' while the handler is still running.
 */
export class Waiter {
  resolve: (outcome: Outcome | 'abandoned') => void = ignore;
  readonly ok: () => void;
  readonly failed: (error: unknown) => void;

  constructor(inFlight: InFlight) {
    this.ok = () => {
      inFlight.leave();
      this.resolve('ok');
    };
    this.failed = (error) => {
      inFlight.leave();
      this.resolve({ error });
    };
  }

  wake(outcome: 'abandoned'): void {
    this.resolve(outcome);
  }
}

/** A promise settled from outside, once; it never reports an unhandled rejection. */
export interface Settleable {
  readonly promise: Promise<void>;
  readonly settled: boolean;
  resolve(): void;
  reject(error: unknown): void;
}

export function settleable(): Settleable {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  const state = {
    promise,
    settled: false,
    resolve(): void {
      if (state.settled) return;
      state.settled = true;
      resolve();
    },
    reject(error: unknown): void {
      if (state.settled) return;
      state.settled = true;
      reject(error);
    },
  };
  return state;
}
