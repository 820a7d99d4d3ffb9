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
