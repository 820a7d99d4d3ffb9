/**
 * A promise settled from outside, once; it never reports an unhandled
 * rejection (it rejects only for callers that await it).
 */
export interface Settleable {
  readonly promise: Promise<void>;
  /** Whether `resolve` or `reject` was called. */
  readonly settled: boolean;
  /** Resolves the promise, unless it was settled already. */
  resolve(): void;
  /** Rejects the promise with `error`, unless it was settled already. */
  reject(error: unknown): void;
}

/** A new, unsettled Settleable. */
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
