import { BrokerError, ConfigurationError, TimeoutError } from './errors.js';
import { type Settleable, settleable } from './settleable.js';
import type { Server } from './server.js';

/** Options of `App`. */
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
 * a signal, within a time limit; `run()` settles once the app has stopped. An
 * app can be started again after it stopped. It never exits the process: after
 * `run()` settles, the process ends when nothing else keeps it alive, or when
 * the caller exits, with a status that says whether stopping succeeded.
 */
export class App {
  readonly name: string;
  readonly #servers: Server[];
  readonly #stopTimeoutMs: number;
  readonly #signals: NodeJS.Signals[];
  readonly #log: (line: string) => void;
  #started: Server[] = [];
  #phase: 'idle' | 'starting' | 'running' = 'idle';
  #stopping: Promise<void> | undefined;
  /** The current run's outcome: settles once the app has stopped (rejects with StopError when stopping failed). */
  #run: Settleable = settleable();
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

  /**
   * Starts every server; if one fails, stops those already started and rejects
   * with its error. Rejects when the app is already started; after a stop, it
   * starts the app again.
   */
  async start(): Promise<void> {
    if (this.#stopping) await this.#stopping.catch(() => undefined);
    if (this.#phase !== 'idle') throw new ConfigurationError(`${this.name} is already started; stop it before starting it again`);
    this.#phase = 'starting';
    this.#run = settleable();
    for (const signal of this.#signals) process.on(signal, this.#onSignal);
    for (const server of this.#servers) {
      try {
        await server.start();
      } catch (error) {
        this.#log(`${this.name}: ${server.name} failed to start`);
        await this.stop().catch(() => undefined);
        throw error;
      }
      if (this.#phase !== 'starting' || this.#stopping) {
        // stop() (a signal) came while this server was starting: it was not among those stopped.
        await server.stop().catch(() => undefined);
        throw new BrokerError(`${this.name} was stopped while ${server.name} was starting`);
      }
      this.#started.push(server);
      this.#log(`${this.name}: ${server.name} started`);
    }
    this.#phase = 'running';
  }

  /**
   * Starts the app and settles once it has stopped (after `stop()` or a signal):
   * resolves when every server stopped in time, rejects with a StopError when
   * one did not (messages may have been left unacknowledged for redelivery).
   */
  async run(): Promise<void> {
    await this.start();
    await this.#run.promise;
  }

  /** Settles once the current run has stopped, as `run()` does, for callers that started it with `start()`. */
  get stopped(): Promise<void> {
    return this.#run.promise;
  }

  /**
   * Stops started servers in reverse order, waiting at most `stopTimeoutMs` in
   * all; servers reached after the deadline are still told to stop. Rejects with
   * a StopError naming every server that failed or ran out of time. Calls made
   * while stopping share its outcome.
   */
  stop(): Promise<void> {
    if (this.#stopping) return this.#stopping;
    if (this.#phase === 'idle') return Promise.resolve();
    const run = this.#run;
    const stopping = this.#stopAll().then(
      () => run.resolve(),
      (error: unknown) => {
        run.reject(error);
        throw error;
      },
    );
    this.#stopping = stopping.finally(() => {
      for (const signal of this.#signals) process.off(signal, this.#onSignal);
      this.#phase = 'idle';
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  async #stopAll(): Promise<void> {
    const errors: unknown[] = [];
    const deadline = Date.now() + this.#stopTimeoutMs;
    const started = this.#started.reverse();
    this.#started = [];
    for (const server of started) {
      const left = Math.max(0, deadline - Date.now());
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new TimeoutError(`${server.name} did not stop within the app's ${this.#stopTimeoutMs} ms`)), left);
      });
      try {
        await Promise.race([server.stop(), expired]);
        this.#log(`${this.name}: ${server.name} stopped`);
      } catch (error) {
        this.#log(`${this.name}: ${server.name} failed to stop: ${error instanceof Error ? error.message : String(error)}`);
        errors.push(error);
      } finally {
        clearTimeout(timer);
      }
    }
    if (errors.length > 0) throw new StopError(errors);
  }
}
