import { ConfigurationError } from '@ktransport/broker';
import { NoStreamError } from '@ktransport/transport-nats';
import { natsSubject, openBroker, type Opened } from './connect.js';
import { EXIT, type RunIo } from './io.js';

/** A command's `--stream` (NATS) and `--sasl` (Kafka) options. */
export interface BrokerFlags {
  readonly stream?: string;
  readonly sasl?: string;
}

/**
 * The broker a command's URL picks, as publish, tail and request open it: the
 * NATS stream `--stream` names captures `topic`'s subjects, connecting may take
 * `timeoutMs`, and what the broker reports goes to stderr.
 */
export function openFor(io: RunIo, url: string, topic: string, flags: BrokerFlags, timeoutMs: number): Opened {
  return openBroker({
    url,
    env: io.env ?? {},
    timeoutMs,
    stream: flags.stream === undefined ? undefined : { name: flags.stream, subjects: [natsSubject(topic)] },
    sasl: flags.sasl,
    report: (t) => io.stderr.write(`ktransport: ${t}\n`),
  });
}

/** Connects; on failure reports it (redacted) and gives the exit status, after closing what was opened. */
export async function connectOrFail(opened: Opened, io: RunIo): Promise<number | undefined> {
  try {
    await opened.broker.connect();
    return undefined;
  } catch (error) {
    const text = opened.redact(describe(error));
    // Transports name the URL themselves (masked); say it once.
    io.stderr.write(`ktransport: ${text.includes('://') ? text : `cannot connect to ${opened.displayUrl}: ${text}`}\n`);
    await opened.broker.disconnect().catch(() => undefined);
    return error instanceof ConfigurationError ? EXIT.usage : EXIT.failure;
  }
}

/** Waits `ms` (nothing when not positive), or less when the signal aborts. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** An error's message, with its cause's when that says more. */
export function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // nats.js words a publish no stream captures as "jetstream is not enabled", which is not
  // what happened (the server has JetStream; no stream covers the subject): say what helps.
  if (error instanceof NoStreamError) return `${error.message} (--stream NAME binds to a stream or creates one capturing it)`;
  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  return cause && !error.message.includes(cause) ? `${error.message} (${cause})` : error.message;
}
