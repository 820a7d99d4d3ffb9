/** Polls `predicate` until it holds; throws with `describe()` after `timeoutMs`. */
export async function waitFor(predicate: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`);
    await sleep(10);
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Publishes with bounded retries, for cases where the broker is briefly away (restart). */
export async function publishEventually(publish: () => Promise<void>, attempts = 100, delayMs = 200): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      return await publish();
    } catch (error) {
      if (i >= attempts) throw error;
      await sleep(delayMs);
    }
  }
}
