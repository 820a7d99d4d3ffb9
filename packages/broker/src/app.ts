import { BrokerError, TimeoutError } from './errors.js';
import type { Server } from './server.js';

export interface AppOptions {
  name?: string;
  servers: Server[];
  /** Time allowed for stopping all servers (each drains its in-flight work). Default 30,000 ms. */
  stopTimeoutMs?: number;
  /** Signals that stop the app. Default SIGINT and SIGTERM; `[]` installs no handlers. */
  signals?: NodeJS.Signals[];
  /** Where start/stop progress goes. Default: nothing. */
  logger?: (line: string) => void;
}

/** Some servers failed to stop in time or with an error; the app still stopped the rest. */
export class StopError extends BrokerError {
  override readonly code = 'STOP_ERROR';
  readonly errors: readonly unknown[];
  constructor(errors: unknown[]) {
    super(`stopping failed: ${errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ')}`, { cause: errors[0] });
    this.errors = errors;
  }
}

/**
 * Starts its servers in order and stops them in reverse order, on `stop()` or on
 * a signal, within a time limit; `run()` resolves once the app has stopped.
 */
export class App {
  readonly name: string;
  readonly #servers: Server[];
  readonly #stopTimeoutMs: number;
  readonly #signals: NodeJS.Signals[];
  readonly #log: (line: string) => void;
  #started: Server[] = [];
  #stopping: Promise<void> | undefined;
  #stopped!: () => void;
  readonly #done = new Promise<void>((resolve) => (this.#stopped = resolve));
  readonly #onSignal = (signal: NodeJS.Signals): void => {
    this.#log(`${this.name}: ${signal} received, stopping`);
    this.stop().catch((error: unknown) => this.#log(`${this.name}: ${error instanceof Error ? error.message : String(error)}`));
  };

  constructor(options: AppOptions) {
    this.name = options.name ?? 'app';
    this.#servers = [...options.servers];
    this.#stopTimeoutMs = options.stopTimeoutMs ?? 30_000;
    this.#signals = options.signals ?? ['SIGINT', 'SIGTERM'];
    this.#log = options.logger ?? (() => undefined);
  }

  /** Starts every server; if one fails, stops those already started and rejects with its error. */
  async start(): Promise<void> {
    for (const signal of this.#signals) process.on(signal, this.#onSignal);
    for (const server of this.#servers) {
      try {
        await server.start();
      } catch (error) {
        this.#log(`${this.name}: ${server.name} failed to start`);
        await this.stop().catch(() => undefined);
        throw error;
      }
      this.#started.push(server);
      this.#log(`${this.name}: ${server.name} started`);
    }
  }

  /** Starts the app and resolves once it has stopped (after `stop()` or a signal). */
  async run(): Promise<void> {
    await this.start();
    await this.#done;
  }

  /** Resolves once the app has stopped, for callers that started it with `start()`. */
  get stopped(): Promise<void> {
    return this.#done;
  }

  /**
   * Stops started servers in reverse order, waiting at most `stopTimeoutMs` in
   * all; servers reached after the deadline are still told to stop. Safe to call
   * more than once.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stopAll().finally(() => {
      for (const signal of this.#signals) process.off(signal, this.#onSignal);
      this.#stopped();
    });
    return this.#stopping;
  }

  async #stopAll(): Promise<void> {
    const errors: unknown[] = [];
    const deadline = Date.now() + this.#stopTimeoutMs;
    for (const server of this.#started.reverse()) {
      const left = Math.max(0, deadline - Date.now());
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new TimeoutError(`${server.name} did not stop within the app's ${this.#stopTimeoutMs} ms`)), left);
      });
      try {
        await Promise.race([server.stop(), expired]);
        this.#log(`${this.name}: ${server.name} stopped`);
      } catch (error) {
        errors.push(error);
      } finally {
        clearTimeout(timer);
      }
    }
    this.#started = [];
    if (errors.length > 0) throw new StopError(errors);
  }
}
