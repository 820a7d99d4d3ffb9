import { AuthenticationError, BrokerError, CertificateError, ConnectionError, PublishError, SubscribeError } from '@ktransport/broker';
import { headerText, isCertificateError, redactSecrets } from '@ktransport/broker/transport';

/**
 * MQTT 3.1.1 has no user properties: publishing with headers the caller passed
 * explicitly is refused rather than silently dropping them.
 */
export class HeadersNotSupportedError extends PublishError {
  override readonly code: string = 'HEADERS_NOT_SUPPORTED';
  readonly headers: readonly string[];
  constructor(topic: string, headers: readonly string[]) {
    super(
      topic,
      `cannot publish to ${headerText(topic, 200)} with headers (${headerText(headers.join(', '), 500)}): MQTT 3.1.1 has no user properties; use protocolVersion 5`,
    );
    this.headers = headers;
  }
}

/**
 * The encoded message is larger than `maxPayloadBytes` or the broker's Maximum
 * Packet Size (checked before sending), or the broker refused it as too large
 * (reason 0x95, e.g. Mosquitto's `message_size_limit`; `limit` is then unknown).
 */
export class PayloadTooLargeError extends PublishError {
  override readonly code: string = 'PAYLOAD_TOO_LARGE';
  readonly size: number;
  readonly limit: number | undefined;
  constructor(topic: string, what: string, size: number, limit: number | undefined, options: { cause?: unknown } = {}) {
    const why =
      limit === undefined ? `the broker refused the ${what} of ${size} bytes as too large (reason 0x95)` : `${what} of ${size} bytes exceeds ${limit}`;
    super(topic, `cannot publish to ${topic}: ${why}`, { ...options, retriable: false });
    this.size = size;
    this.limit = limit;
  }
}

/**
 * Why MQTT cannot carry a string: a character it does not allow, more than 65,535 UTF-8 bytes,
 * no string at all, or a wildcard (`+`, `#`) in a `reply-to` header (a Response Topic is a topic
 * name, not a filter).
 */
export type InvalidTextReason = 'invalid-character' | 'too-long' | 'not-a-string' | 'wildcard';

function explain(reason: InvalidTextReason, detail: number): string {
  if (reason === 'too-long') return `is ${detail} UTF-8 bytes long; an MQTT string holds at most 65,535`;
  if (reason === 'not-a-string') return 'is not a string';
  if (reason === 'wildcard') return `has an MQTT wildcard (+ or #) at index ${detail}; a Response Topic is a topic name, not a filter`;
  return `has a character MQTT strings must not carry (a control character, an unpaired surrogate or a noncharacter) at index ${detail}`;
}

/**
 * A header (user property name or value, content type, `message-key`) that MQTT
 * cannot carry. Refused before anything is sent: Mosquitto would close the
 * connection, and mqtt.js would send the stored packet again on every reconnect.
 * Not retriable; the connection is not affected.
 */
export class InvalidHeaderError extends PublishError {
  override readonly code: string = 'INVALID_HEADER';
  /** The header's name, escaped and shortened for display (`content-type`, `message-key` or a user property). */
  readonly header: string;
  readonly reason: InvalidTextReason;
  constructor(topic: string, header: string, part: 'name' | 'value', reason: InvalidTextReason, detail: number) {
    const name = headerText(header, 200);
    super(topic, `cannot publish to ${headerText(topic, 200)}: the ${part} of header "${name}" ${explain(reason, detail)}`, { retriable: false });
    this.header = name;
    this.reason = reason;
  }
}

/** A topic name MQTT cannot carry (see InvalidHeaderError). Not retriable; the connection is not affected. */
export class InvalidTopicError extends PublishError {
  override readonly code: string = 'INVALID_TOPIC';
  readonly reason: InvalidTextReason;
  constructor(topic: string, reason: InvalidTextReason, detail: number) {
    super(topic, `cannot publish to ${headerText(topic, 200)}: the topic ${explain(reason, detail)}`, { retriable: false });
    this.reason = reason;
  }
}

/**
 * The broker does not speak the MQTT version of the CONNECT: it answered
 * "unacceptable protocol version" (MQTT 3.1.1 return code 1, MQTT 5 reason
 * 0x84), which is final, or it closed the connection of an MQTT 5 CONNECT
 * without answering, as RabbitMQ 3.x's MQTT plugin does (retriable: a broker
 * shutting down does that too).
 */
export class ProtocolVersionError extends ConnectionError {
  override readonly code = 'PROTOCOL_VERSION';
  readonly protocolVersion: 4 | 5;
  constructor(url: string, protocolVersion: 4 | 5, refused: boolean, options: { cause?: unknown } = {}) {
    const version = protocolVersion === 5 ? 'MQTT 5' : 'MQTT 3.1.1';
    const what = refused
      ? `${url} refused the ${version} CONNECT as an unacceptable protocol version`
      : `${url} closed the connection without answering the ${version} CONNECT; a broker that does not speak ${version} does that (RabbitMQ 3.x's MQTT plugin speaks 3.1.1 only)`;
    const hint = protocolVersion === 5 ? '; set protocolVersion: 4 (MQTT 3.1.1) for this broker' : '';
    super(`${what}${hint}`, { ...options, retriable: !refused });
    this.protocolVersion = protocolVersion;
  }
}

/** SUBACK reason "shared subscriptions not supported". */
const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9e;

/**
 * A `group` subscription on a broker without shared subscriptions (its MQTT 5
 * CONNACK says so, or it refused `$share/...` with reason 0x9E): a SubscribeError
 * that says what to do instead of a subscription that would never deliver.
 */
export function sharedSubscriptionsUnavailable(filter: string, group: string, why: string, cause?: unknown): SubscribeError {
  return new SubscribeError(
    filter,
    `cannot subscribe group "${group}" to ${filter}: ${why}. Set sharedSubscriptions: false in the MqttBroker options: ` +
      'a group then subscribes to the plain filter, its members on this connection share the messages, but every connection (every instance of the service) gets every message',
    cause === undefined ? {} : { cause },
  );
}

/** The SUBACK reason codes mqtt.js attaches to a refused subscription (`error.packet.granted`). */
function subackCodes(error: unknown): number[] {
  const granted = (error as { packet?: { granted?: unknown } } | null)?.packet?.granted;
  return Array.isArray(granted) ? granted.filter((code): code is number => typeof code === 'number') : [];
}

/** Maps a failed SUBSCRIBE (mqtt.js' error, with the SUBACK reason codes). */
export function subscribeFailure(filter: string, group: string | undefined, mqttFilter: string, error: unknown): SubscribeError {
  if (group !== undefined && subackCodes(error).includes(SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)) {
    return sharedSubscriptionsUnavailable(filter, group, `the broker refused ${mqttFilter} with reason 0x9e (shared subscriptions not supported)`, error);
  }
  return new SubscribeError(filter, `broker refused the subscription to ${mqttFilter}: ${describe(error)}`, { cause: error });
}

/** MQTT 5 CONNACK reason codes and MQTT 3.1.1 return codes that mean "wrong credentials". */
const AUTH_REASON_V5 = new Set([0x86, 0x87, 0x8c]);
const AUTH_RETURN_V4 = new Set([4, 5]);

function reasonCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Maps a failed first connection attempt to a typed error: AuthenticationError,
 * CertificateError (TLS verification failed on either side), ProtocolVersionError
 * or ConnectionError; typed errors pass through. `url` is the redacted URL, and
 * `secrets` are masked in the text taken from the cause.
 */
export function connectFailure(error: unknown, url: string, protocolVersion: 4 | 5, secrets: readonly string[]): BrokerError {
  if (error instanceof BrokerError) return error;
  const detail = redactSecrets(describe(error), secrets);
  if (isCertificateError(error)) return new CertificateError(`TLS certificate check with ${url} failed: ${detail}`, { cause: error });
  const code = reasonCode(error);
  // 1: MQTT 3.1.1's "unacceptable protocol version" (also what a 3.1.1 broker answers an MQTT 5 CONNECT); 0x84: MQTT 5's.
  if (code === 1 || code === 0x84) return new ProtocolVersionError(url, protocolVersion, true, { cause: error });
  const refusedCredentials = code !== undefined && (protocolVersion === 5 ? AUTH_REASON_V5 : AUTH_RETURN_V4).has(code);
  if (refusedCredentials) return new AuthenticationError(`${url} refused the credentials: ${detail}`, { cause: error });
  return new ConnectionError(`cannot connect to ${url}: ${detail}`, { cause: error });
}

/** PUBACK/PUBREC reason "packet too large" (Mosquitto's message_size_limit; see wire.ts). */
const PACKET_TOO_LARGE = 0x95;

/** Maps an mqtt.js publish callback error: a PUBACK/PUBREC reason code or a lost connection. `size`: the payload's bytes. */
export function publishFailure(topic: string, error: unknown, size = 0): BrokerError {
  if (error instanceof BrokerError) return error;
  const code = reasonCode(error);
  if (code === PACKET_TOO_LARGE) return new PayloadTooLargeError(topic, 'message', size, undefined, { cause: error });
  if (code !== undefined) {
    // 0x97 quota exceeded and 0x89 server busy may pass; not authorized, bad topic or too large will not.
    const retriable = code === 0x97 || code === 0x89 || code === 0x80;
    return new PublishError(topic, `broker refused the message for ${topic} (reason 0x${code.toString(16)}): ${describe(error)}`, { cause: error, retriable });
  }
  return new ConnectionError(`publish to ${topic} not confirmed: ${describe(error)}`, { cause: error });
}
