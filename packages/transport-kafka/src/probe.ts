import type { Admin } from 'kafkajs';
import { createKafka } from './client.js';
import type { ResolvedOptions } from './options.js';

/** How long one probe may take: twice its period, at least 2 s (a busy broker), at most 10 s. */
export function probeTimeoutMs(intervalMs: number): number {
  return Math.min(Math.max(2 * intervalMs, 2_000), 10_000);
}

/**
 * Asks the cluster for its metadata every `healthCheckIntervalMs`, on a
 * connection of its own, without kafkajs retries and within `probeTimeoutMs`, so
 * that a broker that went away is noticed within about one period (a refused or
 * reset connection) or a period plus the timeout (a broker that stopped
 * answering), whatever backoff the producer and the consumers are in. It reports
 * every change: `onChange(false)` after a failed probe, `onChange(true)` after
 * the first one that succeeded again.
 */
export class ClusterProbe {
  readonly #admin: Admin;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #onChange: (reachable: boolean) => void;
  #timer: NodeJS.Timeout | undefined;
  #connected = false;
  #busy = false;
  #reachable = true;

  constructor(options: ResolvedOptions, onChange: (reachable: boolean) => void) {
    this.#intervalMs = options.healthCheckIntervalMs;
    this.#timeoutMs = probeTimeoutMs(this.#intervalMs);
    const kafka = createKafka(options, { retry: { retries: 0 }, connectionTimeout: this.#timeoutMs, requestTimeout: this.#timeoutMs, silent: true });
    this.#admin = kafka.admin({ retry: { retries: 0 } });
    this.#onChange = onChange;
  }

  /** Whether the last probe succeeded (true before the first one). */
  get reachable(): boolean {
    return this.#reachable;
  }

  start(): void {
    if (this.#timer !== undefined) return;
    this.#reachable = true;
    this.#timer = setInterval(() => void this.#probe(), this.#intervalMs);
    // The broker's own connections keep the process alive while it is connected; the probe alone must not.
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#connected = false;
    await this.#admin.disconnect().catch(() => undefined);
  }

  async #probe(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    let reachable: boolean;
    try {
      reachable = await this.#ask();
    } finally {
      this.#busy = false;
    }
    if (this.#timer === undefined) return;
    if (!reachable) {
      // A fresh connection next time: kafkajs may keep a half-open one.
      this.#connected = false;
      await this.#admin.disconnect().catch(() => undefined);
    }
    if (reachable === this.#reachable) return;
    this.#reachable = reachable;
    this.#onChange(reachable);
  }

  /** One metadata request, connecting first if needed; false on any error or after the timeout. */
  #ask(): Promise<boolean> {
    const request = (async (): Promise<boolean> => {
      if (!this.#connected) {
        await this.#admin.connect();
        this.#connected = true;
      }
      await this.#admin.describeCluster();
      return true;
    })();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.#timeoutMs)));
    return Promise.race([request.catch(() => false), late]).finally(() => clearTimeout(timer));
  }
}
