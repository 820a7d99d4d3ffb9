import { AuthenticationError, BrokerError, CertificateError, ConnectionError, PublishError } from '@ktransport/broker';
import { headerText, isCertificateError, redactSecrets } from '@ktransport/broker/transport';

/**
 * The encoded message is larger than `maxMessageBytes` (checked before
 * anything is sent), or the broker refused it as larger than its
 * `max_message_size` (a channel error 406; `limit` is then unknown). Not
 * retriable; the connection and the subscriptions are not affected.
 */
export class PayloadTooLargeError extends PublishError {
  override readonly code: string = 'PAYLOAD_TOO_LARGE';
  /** The payload's size in bytes. */
  readonly size: number;
  /** The limit it exceeded, when known before sending. */
  readonly limit: number | undefined;
  constructor(topic: string, size: number, limit: number | undefined, options: { cause?: unknown } = {}) {
    const why = limit === undefined ? `the broker refused the payload of ${size} bytes as too large` : `the payload of ${size} bytes exceeds ${limit}`;
    super(topic, `cannot publish to ${headerText(topic, 200)}: ${why}`, { ...options, retriable: false });
    this.size = size;
    this.limit = limit;
  }
}

/** Why AMQP cannot carry a header or a topic as given. */
export type InvalidTextReason = 'not-a-string' | 'too-long' | 'unpaired-surrogate' | 'reserved-character';

function explain(reason: InvalidTextReason, detail: string): string {
  if (reason === 'not-a-string') return 'is not a string';
  if (reason === 'too-long') return `is longer than ${detail} UTF-8 bytes`;
  if (reason === 'unpaired-surrogate') return 'has an unpaired surrogate, which UTF-8 cannot carry';
  return detail;
}

/**
 * A header that AMQP cannot carry: a name over 255 UTF-8 bytes (a short
 * string), a value that is not a string, text with an unpaired surrogate, a
 * `content-type` or `message-id` over 255 bytes (AMQP properties), or a headers
 * table larger than the client can encode (64 KiB). Refused before anything is
 * sent: not retriable, and the connection is not affected.
 */
export class InvalidHeaderError extends PublishError {
  override readonly code: string = 'INVALID_HEADER';
  /** The header's name, escaped and shortened for display. */
  readonly header: string;
  readonly reason: InvalidTextReason;
  constructor(topic: string, header: string, part: 'name' | 'value' | 'table', reason: InvalidTextReason, detail = '') {
    const name = headerText(header, 200);
    const what = part === 'table' ? 'the headers table' : `the ${part} of header "${name}"`;
    super(topic, `cannot publish to ${headerText(topic, 200)}: ${what} ${explain(reason, detail)}`, { retriable: false });
    this.header = name;
    this.reason = reason;
  }
}

/**
 * A topic that cannot become an AMQP routing key: one with `.` or `*` (the
 * routing key's separator and wildcard; ktransport topics use `/`), over 255
 * UTF-8 bytes, or with an unpaired surrogate. Not retriable; nothing is sent.
 */
export class InvalidTopicError extends PublishError {
  override readonly code: string = 'INVALID_TOPIC';
  readonly reason: InvalidTextReason;
  constructor(topic: string, reason: InvalidTextReason, detail = '') {
    super(topic, `cannot publish to "${headerText(topic, 200)}": the topic ${explain(reason, detail)}`, { retriable: false });
    this.reason = reason;
  }
}

/**
 * A `mandatory` publish that no queue was bound for: the broker returned it
 * (`basic.return`, 312 NO_ROUTE). Not retriable: the same publish fails the
 * same way until someone subscribes.
 */
export class UnroutableError extends PublishError {
  override readonly code: string = 'UNROUTABLE';
  constructor(topic: string, detail: string) {
    super(topic, `the broker returned the mandatory message for ${headerText(topic, 200)}: ${headerText(detail, 200)} (no queue is bound for it)`, {
      retriable: false,
    });
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The AMQP reply code in an amqplib error: its `code`, or the code in "Handshake terminated by server: 403 (ACCESS-REFUSED)". */
export function replyCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'number') return code;
  const match = /\b(\d{3}) \(([A-Z-]+)\)/.exec(describe(error));
  return match ? Number(match[1]) : undefined;
}

/**
 * Maps a failed connection attempt to a typed error: AuthenticationError for
 * refused credentials (403 ACCESS_REFUSED) or a vhost the user may not open
 * (530 NOT_ALLOWED), CertificateError, or a retriable ConnectionError. `url` is
 * the redacted URL, and `secrets` are masked in the text taken from the cause.
 */
export function connectFailure(error: unknown, url: string, secrets: readonly string[]): BrokerError {
  if (error instanceof BrokerError) return error;
  const detail = headerText(redactSecrets(describe(error), secrets), 1_000);
  if (isCertificateError(error)) return new CertificateError(`TLS certificate check with ${url} failed: ${detail}`, { cause: error });
  const code = replyCode(error);
  if (code === 403) return new AuthenticationError(`${url} refused the credentials: ${detail}`, { cause: error });
  // amqplib reports the broker's 530 NOT_ALLOWED answer to connection.open (no such vhost, or no access to it) without its code.
  if (code === 530 || /Expected ConnectionOpenOk; got <ConnectionClose/.test(detail)) {
    return new AuthenticationError(`${url} refused to open the vhost (it does not exist or the user has no access to it): ${detail}`, { cause: error });
  }
  return new ConnectionError(`cannot connect to ${url}: ${detail}`, { cause: error });
}
