import { MemoryBroker, type MemoryBrokerOptions } from '@ktransport/broker';

/** A connected MemoryBroker with telemetry off unless a test asks for it. */
export async function memoryBroker(options: MemoryBrokerOptions = {}): Promise<MemoryBroker> {
  const broker = new MemoryBroker({ tracing: false, metrics: false, redeliveryDelayMs: 5, ...options });
  await broker.connect();
  return broker;
}

export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** `value`, or a failure naming `what` when it is missing. */
export function defined<T>(value: T | null | undefined, what: string): T {
  if (value === undefined || value === null) throw new Error(`expected ${what}, found none`);
  return value;
}
