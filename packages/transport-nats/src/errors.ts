import { AuthenticationError, BrokerError, CertificateError, ConnectionError, PublishError } from '@ktransport/broker';
import { headerText, isCertificateError, redactSecrets } from '@ktransport/broker/transport';

/**
 * No JetStream stream captures the subject of a publish: the server answered
 * "no responders" instead of a PubAck. Not retriable: add a stream (the
 * `streams` option, or one your platform team manages) whose subjects cover it.
 */
export class NoStreamError extends PublishError {
  override readonly code: string = 'NO_STREAM';
  /** The NATS subject that no stream captures. */
  readonly subject: string;
  constructor(topic: string, subject: string, options: { cause?: unknown } = {}) {
    super(
      topic,
      `cannot publish to ${headerText(topic, 200)}: no JetStream stream captures the subject "${headerText(subject, 200)}" (no responders); create a stream for it`,
      { ...options, retriable: false },
    );
    this.subject = subject;
  }
}

/**
 * The message (payload and headers) is larger than the server's `max_payload`,
 * announced in its INFO (1 MiB by default). Checked before sending; not
 * retriable; the connection is not affected.
 */
export class PayloadTooLargeError extends PublishError {
  override readonly code: string = 'PAYLOAD_TOO_LARGE';
  readonly size: number;
  readonly limit: number;
  constructor(topic: string, size: number, limit: number) {
    super(
      topic,
      `cannot publish to ${headerText(topic, 200)}: the message of ${size} bytes (payload and headers) exceeds the server's max_payload of ${limit}`,
      {
        retriable: false,
      },
    );
    this.size = size;
    this.limit = limit;
  }
}

/**
 * A header NATS cannot carry: a name that is not a token (printable ASCII
 * without spaces or colons) or a value with a control character (CR and LF
 * would end the header line). Refused before anything is sent; not retriable;
 * the connection is not affected.
 */
export class InvalidHeaderError extends PublishError {
  override readonly code: string = 'INVALID_HEADER';
  /** The header's name, escaped and shortened for display. */
  readonly header: string;
  constructor(topic: string, header: string, why: string) {
    const name = headerText(String(header), 200);
    super(topic, `cannot publish to ${headerText(topic, 200)}: header "${name}" ${why}`, { retriable: false });
    this.header = name;
  }
}

/** A topic that cannot become a NATS subject (see the README's topic mapping). Not retriable. */
export class InvalidTopicError extends PublishError {
  override readonly code: string = 'INVALID_TOPIC';
  constructor(topic: string, why: string) {
    super(topic, `cannot publish to "${headerText(topic, 200)}" on NATS: ${why}`, { retriable: false });
  }
}

/** What nats.js errors look like: a class name, a message and a cause chain. */
interface ErrorShape {
  readonly name?: unknown;
  readonly message?: unknown;
  readonly cause?: unknown;
  readonly code?: unknown;
}

function chain(error: unknown): ErrorShape[] {
  const out: ErrorShape[] = [];
  for (let e = error, i = 0; e !== null && typeof e === 'object' && i < 8; i++) {
    const shape: ErrorShape = e;
    out.push(shape);
    e = shape.cause;
  }
  return out;
}

function text(error: unknown, secrets: readonly string[]): string {
  const messages = [...new Set(chain(error).map((e) => (typeof e.message === 'string' ? e.message : '')))].filter(Boolean);
  return headerText(redactSecrets(messages.length > 0 ? messages.join(': ') : String(error), secrets), 1_000);
}

const named = (error: unknown, ...names: string[]): boolean =>
  chain(error).some((e) => names.includes(String(e.name)) || names.includes(String((e as object).constructor?.name)));

/** The server refused the credentials ("Authorization Violation", expired or missing user). */
export const isAuthFailure = (error: unknown): boolean =>
  named(error, 'AuthorizationError', 'UserAuthenticationExpiredError') ||
  chain(error).some((e) => /authorization violation|authentication/i.test(String(e.message)));

/** A publish or request found no subscriber: for JetStream, no stream captures the subject. */
export const isNoResponders = (error: unknown): boolean => named(error, 'NoRespondersError', 'JetStreamNotEnabled');

/** An error's messages (its causes included) as bounded text. */
export function describeError(error: unknown, secrets: readonly string[] = []): string {
  return text(error, secrets);
}

/** A failure of `connect()` as a typed error: refused credentials, a certificate that does not verify, or unreachable. */
export function toConnectionError(error: unknown, where: string, secrets: readonly string[]): BrokerError {
  if (error instanceof BrokerError) return error;
  const why = text(error, secrets);
  if (isAuthFailure(error)) return new AuthenticationError(`NATS at ${where} refused the credentials: ${why}`, { cause: error });
  if (chain(error).some((e) => isCertificateError(e))) return new CertificateError(`TLS verification with NATS at ${where} failed: ${why}`, { cause: error });
  return new ConnectionError(`cannot connect to NATS at ${where}: ${why}`, { cause: error });
}

/** A publish that JetStream did not acknowledge. */
export function toPublishError(topic: string, subject: string, error: unknown, secrets: readonly string[]): BrokerError {
  if (error instanceof BrokerError) return error;
  if (isNoResponders(error)) return new NoStreamError(topic, subject, { cause: error });
  const why = text(error, secrets);
  if (named(error, 'ClosedConnectionError', 'DrainingConnectionError')) {
    return new ConnectionError(`publish to ${headerText(topic, 200)} failed: the NATS connection is closed (${why})`, { cause: error });
  }
  // A timeout (no PubAck in time), a lost connection or a stream leader election may pass;
  // the server refusing the message (JetStreamApiError: limits, permissions, wrong expectations) will not.
  const refused = named(error, 'JetStreamApiError', 'PermissionViolationError', 'InvalidArgumentError', 'InvalidSubjectError');
  return new PublishError(topic, `publish to ${headerText(topic, 200)} failed: ${why}`, { cause: error, retriable: !refused });
}
