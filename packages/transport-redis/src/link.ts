import { ConnectionError, type ConnectionState } from '@ktransport/broker';
import { isCertificateError } from '@ktransport/broker/transport';
import { createClient, RESP_TYPES } from '@redis/client';
import { isAuthFailure, toConnectionError } from './errors.js';
import { MAX_RECONNECT_DELAY_MS, type ResolvedOptions } from './options.js';

/** What the transport uses of a @redis/client connection (bulk strings are read as Buffers). */
export interface RedisConnection {
  sendCommand<T = unknown>(args: readonly (string | Buffer)[], options?: { timeout?: number }): Promise<T>;
  connect(): Promise<unknown>;
  close(): Promise<void>;
  destroy(): void;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  readonly isReady: boolean;
}

type Phase = 'connecting' | 'open' | 'closed';

/**
 * One connection to Redis (@redis/client) and its state: `open()` connects
 * within `connectTimeoutMs` (refused credentials and certificates fail at once),
 * after that the client reconnects with a backoff that doubles from
 * `reconnectDelayMs` up to 5 s, and `whenReady()` waits for that. The broker
 * has one link for publishes, acknowledgements and group administration; each
 * subscription has one of its own for its blocking reads.
 */
export class Link {
  readonly client: RedisConnection;
  readonly #options: ResolvedOptions;
  #phase: Phase = 'connecting';
  #deadline = 0;
  #state: ConnectionState = 'disconnected';
  #waiters: { readonly go: () => void; readonly fail: (error: Error) => void }[] = [];
  readonly #onState: ((state: ConnectionState) => void) | undefined;
  /** The last failure while reconnecting (for messages). */
  lastError: unknown;

  constructor(options: ResolvedOptions, name: string, onState?: (state: ConnectionState) => void) {
    this.#options = options;
    this.#onState = onState;
    const client = createClient({
      url: options.url,
      name,
      // A command while reconnecting fails at once (a retriable ConnectionError) instead of waiting in a queue.
      disableOfflineQueue: true,
      // RESP3 (the client's default); bulk strings as Buffers, maps (XREAD replies) as Maps.
      commandOptions: { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer, [RESP_TYPES.MAP]: Map } },
      socket: {
        ...(options.tls ? { ...options.tls, tls: true as const } : {}),
        connectTimeout: options.connectTimeoutMs,
        reconnectStrategy: (retries: number, cause: Error) => this.#strategy(retries, cause),
      },
    });
    this.client = client;
    client.on('error', (error: unknown) => {
      this.lastError = error;
      if (this.#phase === 'open') this.#setState('reconnecting');
    });
    client.on('reconnecting', () => {
      if (this.#phase === 'open') this.#setState('reconnecting');
    });
    client.on('ready', () => {
      if (this.#phase !== 'open') return;
      this.#setState('connected');
      for (const waiter of this.#waiters.splice(0)) waiter.go();
    });
  }

  get state(): ConnectionState {
    return this.#state;
  }

  get ready(): boolean {
    return this.#phase === 'open' && this.client.isReady;
  }

  /**
   * Connects; rejects with AuthenticationError, CertificateError or (after
   * `connectTimeoutMs` of failing attempts) ConnectionError.
   */
  async open(): Promise<void> {
    this.#phase = 'connecting';
    this.#deadline = Date.now() + this.#options.connectTimeoutMs;
    this.#setState('connecting');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new ConnectionError(`cannot connect to Redis at ${this.#options.displayUrl}: not connected within ${this.#options.connectTimeoutMs} ms`)),
        this.#options.connectTimeoutMs + 1_000,
      );
    });
    const connecting = this.client.connect();
    try {
      await Promise.race([connecting, late]);
    } catch (error) {
      connecting.catch(() => undefined);
      this.#phase = 'closed';
      this.client.destroy();
      this.#setState('disconnected');
      throw toConnectionError(error, this.#options.displayUrl, this.#options.redact);
    } finally {
      clearTimeout(timer);
    }
    this.#phase = 'open';
    this.#setState('connected');
  }

  /** Resolves when the connection is ready (at once when it is); rejects once the link is closed. */
  whenReady(): Promise<void> {
    if (this.#phase === 'closed') return Promise.reject(new ConnectionError(`the connection to ${this.#options.displayUrl} is closed`));
    if (this.ready) return Promise.resolve();
    return new Promise((go, fail) => this.#waiters.push({ go, fail }));
  }

  /** Closes: `graceful` waits (up to 2 s) for replies still due, otherwise the socket is dropped at once. */
  async close(graceful: boolean): Promise<void> {
    if (this.#phase === 'closed') return;
    this.#phase = 'closed';
    for (const waiter of this.#waiters.splice(0)) waiter.fail(new ConnectionError(`the connection to ${this.#options.displayUrl} was closed`));
    if (graceful && this.client.isReady) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, 2_000)));
      await Promise.race([this.client.close().catch(() => undefined), late]);
      clearTimeout(timer);
    }
    try {
      this.client.destroy();
    } catch {
      // already closed
    }
    this.#setState('disconnected');
  }

  /**
   * @redis/client's reconnect strategy: while connecting, stop at once for
   * refused credentials or certificates and when `connectTimeoutMs` ran out;
   * once connected, try again forever with a backoff.
   */
  #strategy(retries: number, cause: Error): number | Error | false {
    if (this.#phase === 'closed') return false;
    this.lastError = cause;
    const backoff = Math.min(this.#options.reconnectDelayMs * 2 ** Math.min(retries, 20), MAX_RECONNECT_DELAY_MS);
    if (this.#phase === 'connecting') {
      if (isAuthFailure(cause) || isCertificateError(cause)) return cause;
      const left = this.#deadline - Date.now();
      if (left <= 0) return cause;
      return Math.max(1, Math.min(backoff, left));
    }
    return backoff;
  }

  #setState(state: ConnectionState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#onState?.(state);
  }
}
