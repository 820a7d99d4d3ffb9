import { AuthenticationError, BrokerError, ConnectionError, PublishError } from '@ktransport/broker';

/**
 * MQTT 3.1.1 has no user properties: publishing with headers the caller passed
 * explicitly is refused rather than silently dropping them.
 */
export class HeadersNotSupportedError extends PublishError {
  override readonly code: string = 'HEADERS_NOT_SUPPORTED';
  readonly headers: readonly string[];
  constructor(topic: string, headers: readonly string[]) {
    super(topic, `cannot publish to ${topic} with headers (${headers.join(', ')}): MQTT 3.1.1 has no user properties; use protocolVersion 5`);
    this.headers = headers;
  }
}

/** The encoded message is larger than `maxPayloadBytes` or the broker's maximum packet size. */
export class PayloadTooLargeError extends PublishError {
  override readonly code: string = 'PAYLOAD_TOO_LARGE';
  readonly size: number;
  readonly limit: number;
  constructor(topic: string, what: string, size: number, limit: number) {
    super(topic, `cannot publish to ${topic}: ${what} of ${size} bytes exceeds ${limit}`);
    this.size = size;
    this.limit = limit;
  }
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

/** Maps a failed first connection attempt to AuthenticationError or ConnectionError (typed errors pass through). */
export function connectFailure(error: unknown, url: string, protocolVersion: 4 | 5): BrokerError {
  if (error instanceof BrokerError) return error;
  const code = reasonCode(error);
  const refusedCredentials = code !== undefined && (protocolVersion === 5 ? AUTH_REASON_V5 : AUTH_RETURN_V4).has(code);
  if (refusedCredentials) return new AuthenticationError(`${url} refused the credentials: ${describe(error)}`, { cause: error });
  return new ConnectionError(`cannot connect to ${url}: ${describe(error)}`, { cause: error });
}

/** Maps an mqtt.js publish callback error: a PUBACK/PUBREC reason code or a lost connection. */
export function publishFailure(topic: string, error: unknown): BrokerError {
  if (error instanceof BrokerError) return error;
  const code = reasonCode(error);
  if (code !== undefined) {
    // 0x97 quota exceeded and 0x89 server busy may pass; not authorized, bad topic or too large will not.
    const retriable = code === 0x97 || code === 0x89 || code === 0x80;
    return new PublishError(topic, `broker refused the message for ${topic} (reason 0x${code.toString(16)}): ${describe(error)}`, { cause: error, retriable });
  }
  return new ConnectionError(`publish to ${topic} not confirmed: ${describe(error)}`, { cause: error });
}
