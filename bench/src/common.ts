import { inspect } from 'node:util';

/** What the orchestrator hands a worker (one implementation, one round, one child process). */
export interface WorkerConfig {
  readonly suite: 'mqtt' | 'kafka' | 'amqp' | 'nats' | 'redis' | 'latency' | 'scale';
  readonly scenario: string;
  readonly impl: string;
  /** Messages to measure (after the warm-up). */
  readonly n: number;
  /** Size of the JSON body in bytes. */
  readonly bytes: number;
  /** Messages published and received before the measurement starts (latency: milliseconds at the same rate). */
  readonly warmup: number;
  /** Publishes in flight at once. */
  readonly window: number;
  /** Unique per round: no message of an earlier round can arrive. */
  readonly topic: string;
  readonly qos?: 0 | 1;
  /** kafka: measure the producer alone (acknowledged publishes, no consumer). */
  readonly publishOnly?: boolean;
  readonly mqttUrl: string;
  readonly kafkaBrokers: string;
  /** latency: messages per second and how long to publish. */
  readonly rate?: number;
  readonly durationMs?: number;
  /** scale: transport and number of subscriptions. */
  readonly transport?: 'memory' | 'mqtt';
  readonly subs?: number;
  /** Stop waiting when nothing arrived for this long after the last publish. */
  readonly idleMs: number;
}

/** What a worker prints as the last line of its stdout. */
export interface WorkerResult {
  /** Messages received by the handler in the measured part. */
  n: number;
  sent: number;
  elapsed_ms: number;
  msgs_per_s: number;
  p50_ms?: number;
  p99_ms?: number;
  max_ms?: number;
  rss_mb: number;
  /** CPU time (user + system) of the worker process per measured message, in microseconds. */
  cpu_us_per_msg?: number;
  note?: string;
}

export function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The body every implementation publishes: JSON of about `bytes` bytes carrying a sequence number and the send time. */
export interface Body {
  seq: number;
  t: number;
  pad: string;
}

export function bodyFactory(bytes: number): (seq: number) => Body {
  const overhead = JSON.stringify({ seq: 100_000, t: 123_456.789_012, pad: '' }).length;
  const pad = 'x'.repeat(Math.max(0, bytes - overhead));
  return (seq) => ({ seq, t: performance.now(), pad });
}

/**
 * Counts what the handler received: the warm-up first (seq < 0), then the
 * measured messages, from the first publish to the last receive.
 */
export class Receiver {
  warm = 0;
  count = 0;
  start = 0;
  last = 0;
  latencies: number[] = [];
  #keepLatency = false;
  #waiter: (() => void) | undefined;
  #target = Infinity;

  keepLatencies(): this {
    this.#keepLatency = true;
    return this;
  }

  record(body: Body): void {
    if (body.seq < 0) {
      this.warm++;
      if (this.warm >= this.#target) this.#wake();
      return;
    }
    const now = performance.now();
    this.count++;
    this.last = now;
    if (this.#keepLatency) this.latencies.push(now - body.t);
    if (this.count >= this.#target) this.#wake();
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    this.#target = Infinity;
    waiter?.();
  }

  /** Resolves when `target` messages of the kind arrived, or when nothing arrived for `idleMs` after `publishedAt()` says all were sent. */
  async waitFor(kind: 'warm' | 'measured', target: number, idleMs: number, publishDone: () => boolean): Promise<void> {
    const current = (): number => (kind === 'warm' ? this.warm : this.count);
    if (current() >= target) return;
    let seen = current();
    let since = performance.now();
    await new Promise<void>((resolve) => {
      this.#target = target;
      this.#waiter = resolve;
      const timer = setInterval(() => {
        if (this.#waiter !== resolve) return clearInterval(timer);
        if (current() !== seen || !publishDone()) {
          seen = current();
          since = performance.now();
          return;
        }
        if (performance.now() - since > idleMs) {
          clearInterval(timer);
          this.#waiter = undefined;
          this.#target = Infinity;
          resolve();
        }
      }, 50);
    });
    if (kind === 'warm') await sleep(0);
  }
}

/**
 * Publishes `n` messages keeping at most `window` in flight: `publish(seq, done)`
 * must call `done` once the transport accepted the message. Resolves when all
 * were accepted.
 */
export function pump(first: number, n: number, window: number, publish: (seq: number, done: (error?: unknown) => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let next = first;
    const end = first + n;
    let inFlight = 0;
    let failed = false;
    let filling = false;
    const done = (error?: unknown): void => {
      inFlight--;
      if (error && !failed) {
        failed = true;
        reject(error instanceof Error ? error : new Error(typeof error === 'string' ? error : inspect(error)));
        return;
      }
      if (next < end) {
        if (!filling) fill();
      } else if (inFlight === 0) resolve();
    };
    // A transport may call `done` synchronously: the loop below then simply goes on.
    const fill = (): void => {
      filling = true;
      while (inFlight < window && next < end && !failed) {
        inFlight++;
        publish(next++, done);
      }
      filling = false;
      if (next >= end && inFlight === 0 && !failed) resolve();
    };
    if (n === 0) resolve();
    else fill();
  });
}

/** Seq numbers below zero mark warm-up messages. */
export const WARMUP_BASE = -1_000_000_000;

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? NaN;
}

export function rssMb(): number {
  return Math.round((process.memoryUsage().rss / 1024 / 1024) * 10) / 10;
}

export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** The throughput result of a receiver after the measured part. */
export function throughput(receiver: Receiver, sent: number, note?: string): WorkerResult {
  const elapsed = receiver.last - receiver.start;
  const result: WorkerResult = {
    n: receiver.count,
    sent,
    elapsed_ms: round(elapsed, 1),
    msgs_per_s: elapsed > 0 ? Math.round((receiver.count / elapsed) * 1000) : 0,
    rss_mb: rssMb(),
  };
  if (receiver.count < sent) result.note = `${sent - receiver.count} of ${sent} messages did not arrive${note ? `; ${note}` : ''}`;
  else if (note) result.note = note;
  return result;
}

/** Adds the CPU time per message spent since `since` (a process.cpuUsage() reading). */
export function withCpu(result: WorkerResult, since: NodeJS.CpuUsage): WorkerResult {
  const used = process.cpuUsage(since);
  if (result.n > 0) result.cpu_us_per_msg = round((used.user + used.system) / result.n, 2);
  return result;
}

/** Publishes the warm-up, waits for it, then publishes and receives the measured messages. */
export async function measure(
  config: WorkerConfig,
  receiver: Receiver,
  publish: (seq: number, done: (error?: unknown) => void) => void,
  window = config.window,
): Promise<WorkerResult> {
  let warmDone = false;
  const warming = pump(WARMUP_BASE, config.warmup, window, publish).then(() => (warmDone = true));
  await receiver.waitFor('warm', config.warmup, config.idleMs, () => warmDone);
  await warming;
  if (receiver.warm < config.warmup) throw new Error(`warm-up: only ${receiver.warm} of ${config.warmup} messages arrived`);
  let done = false;
  const cpu = process.cpuUsage();
  receiver.start = performance.now();
  const publishing = pump(0, config.n, window, publish).then(() => (done = true));
  await receiver.waitFor('measured', config.n, config.idleMs, () => done);
  await publishing;
  return withCpu(throughput(receiver, config.n), cpu);
}
