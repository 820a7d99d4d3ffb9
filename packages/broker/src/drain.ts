/**
 * Counts work in flight (handlers, redeliveries) so that shutdown can wait for
 * it. Transports share it by composition.
 */
export class InFlight {
  #count = 0;
  #waiters: (() => void)[] = [];

  get size(): number {
    return this.#count;
  }

  /** Counts `work` until it settles; returns it unchanged. */
  track<T>(work: Promise<T>): Promise<T> {
    this.#count++;
    const done = (): void => this.leave();
    work.then(done, done);
    return work;
  }

  /** Counts one piece of work until the matching `leave()`: `track` without a promise, for hot paths. */
  enter(): void {
    this.#count++;
  }

  /** Ends one piece of work counted with `enter()`. */
  leave(): void {
    if (--this.#count === 0 && this.#waiters.length > 0) for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Resolves with 0 once nothing is in flight, or with the count still running when `timeoutMs` passes. */
  idle(timeoutMs: number): Promise<number> {
    if (this.#count === 0) return Promise.resolve(0);
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        resolve(0);
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== wake);
        resolve(this.#count);
      }, timeoutMs);
      this.#waiters.push(wake);
    });
  }
}
