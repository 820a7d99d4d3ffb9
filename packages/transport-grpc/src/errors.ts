import { ConnectionError, DrainTimeoutError } from '@ktransport/broker';

/**
 * The server could not listen on its address. Retriable when the address is in
 * use (it may be freed); not when it cannot be parsed, resolved or assigned.
 */
export class BindError extends ConnectionError {
  override readonly code = 'BIND_ERROR';
  readonly address: string;
  constructor(address: string, message: string, options: { cause?: unknown; retriable?: boolean } = {}) {
    super(message, options);
    this.address = address;
  }
}

/** `stop()` cancelled calls still running when `shutdownTimeoutMs` passed. */
export class ShutdownTimeoutError extends DrainTimeoutError {
  constructor(pending: number, timeoutMs: number) {
    super(pending, timeoutMs);
    this.message = `${pending} call(s) still running after ${timeoutMs} ms of draining; they were cancelled`;
  }
}
