import type { Headers } from '@ktransport/broker';
import { HEADER, REPLY_HEADER } from '@ktransport/broker';
import { invalidTextIndex } from '@ktransport/broker/transport';
import type { IPublishPacket } from 'mqtt';
import { InvalidHeaderError, type InvalidTextReason, InvalidTopicError } from './errors.js';

/** User property that carries `PublishOptions.key` (MQTT has no record key). */
export const KEY_HEADER = 'message-key';

type PublishProperties = NonNullable<IPublishPacket['properties']>;

/**
 * Prefix of a `correlation-id` header that stands for Correlation Data that is
 * not text (a foreign MQTT 5 requester's binary id): base64 of its bytes, made
 * back into the same bytes when the reply is sent.
 */
export const BINARY_CORRELATION_PREFIX = 'base64:';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Correlation Data as a header value: its text when it is valid header text, otherwise `base64:` and its bytes in base64. */
function correlationHeader(data: Buffer): string {
  try {
    const text = strictUtf8.decode(data);
    if (invalidTextIndex(text) === -1 && !text.startsWith(BINARY_CORRELATION_PREFIX)) return text;
  } catch {
    // not UTF-8: carried as base64
  }
  return BINARY_CORRELATION_PREFIX + data.toString('base64');
}

function correlationData(header: string): Buffer {
  return header.startsWith(BINARY_CORRELATION_PREFIX) ? Buffer.from(header.slice(BINARY_CORRELATION_PREFIX.length), 'base64') : Buffer.from(header, 'utf8');
}

/**
 * MQTT 5 publish properties for outgoing headers: `content-type` becomes the
 * contentType property, `reply-to` the Response Topic, `correlation-id` the
 * Correlation Data (request–reply), every other header a user property
 * (`traceparent`, `tracestate` and `message-id` included).
 */
export function toProperties(headers: Headers): PublishProperties {
  const properties: PublishProperties = {};
  let user: Record<string, string> | undefined;
  for (const name in headers) {
    // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- a key of its own for...in; what a JavaScript caller put there instead of a string is refused by remainingLength() before anything is sent
    const value = headers[name]!;
    if (name === HEADER.contentType) properties.contentType = value;
    else if (name === REPLY_HEADER.replyTo) {
      // An empty Response Topic is a protocol error: no reply is asked for.
      if (value !== '') properties.responseTopic = value;
    } else if (name === REPLY_HEADER.correlationId && typeof value === 'string') properties.correlationData = correlationData(value);
    else (user ??= {})[name] = value;
  }
  if (user) properties.userProperties = user;
  return properties;
}

/**
 * Headers of a received message: user properties (a repeated name keeps every
 * value, joined by ", "), the contentType property as `content-type`, the
 * Response Topic as `reply-to` and the Correlation Data as `correlation-id`
 * (its text, or `base64:` and its bytes when it is not text).
 */
export function fromPacket(packet: IPublishPacket): Headers {
  const headers: Headers = {};
  const properties = packet.properties;
  if (!properties) return headers;
  const user = properties.userProperties;
  for (const name in user) {
    const value = user[name];
    if (value === undefined) continue;
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  if (properties.contentType !== undefined) headers[HEADER.contentType] = properties.contentType;
  if (properties.responseTopic !== undefined) headers[REPLY_HEADER.replyTo] = properties.responseTopic;
  if (properties.correlationData !== undefined) headers[REPLY_HEADER.correlationId] = correlationHeader(properties.correlationData);
  return headers;
}

/** MQTT's longest string: its length is a two-byte prefix. */
export const MQTT_MAX_STRING = 65_535;

const BEYOND_PRINTABLE_ASCII = /[^\x20-\x7e]/;

/**
 * The UTF-8 length of `text` as an MQTT string, or a negative number saying why
 * MQTT cannot carry it: -1 not a string, -2 too long, -3 - i a character at
 * index i it does not allow. This runs for every header of every publish: one
 * regular expression test for printable ASCII, and for other text the check of
 * `invalidTextIndex` and one UTF-8 length.
 */
export function mqttStringBytes(text: unknown): number {
  if (typeof text !== 'string') return -1;
  // More UTF-16 units than the limit is more bytes too: no need to scan it.
  if (text.length > MQTT_MAX_STRING) return -2;
  // Printable ASCII, the usual header: valid, one byte per character.
  if (!BEYOND_PRINTABLE_ASCII.test(text)) return text.length;
  const invalid = invalidTextIndex(text);
  if (invalid !== -1) return -3 - invalid;
  const bytes = Buffer.byteLength(text, 'utf8');
  return bytes > MQTT_MAX_STRING ? -2 : bytes;
}

function reasonOf(size: number, text: unknown): [InvalidTextReason, number] {
  if (size === -1) return ['not-a-string', 0];
  if (size === -2) return ['too-long', Buffer.byteLength(String(text), 'utf8')];
  return ['invalid-character', -3 - size];
}

/** Bytes of a topic on the wire (with its length prefix); throws InvalidTopicError when MQTT cannot carry it. */
export function topicSize(topic: string): number {
  const size = mqttStringBytes(topic);
  if (size < 0) throw new InvalidTopicError(topic, ...reasonOf(size, topic));
  return 2 + size;
}

/** Bytes of a header on the wire (with its length prefix); throws InvalidHeaderError when MQTT cannot carry it. */
function headerSize(topic: string, name: string, part: 'name' | 'value', text: unknown): number {
  const size = mqttStringBytes(text);
  if (size < 0) throw new InvalidHeaderError(topic, name, part, ...reasonOf(size, text));
  return 2 + size;
}

function varintSize(value: number): number {
  return value < 128 ? 1 : value < 16_384 ? 2 : value < 2_097_152 ? 3 : 4;
}

/**
 * The remaining length of a PUBLISH packet (without its fixed header), after
 * checking that MQTT can carry the topic and every property: a string it cannot
 * carry throws InvalidTopicError or InvalidHeaderError before anything is sent.
 */
export function remainingLength(topic: string, payloadBytes: number, qos: number, properties: PublishProperties | undefined): number {
  let size = topicSize(topic) + (qos > 0 ? 2 : 0) + payloadBytes;
  if (properties) size += propertiesSize(topic, properties);
  return size;
}

/** Bytes of the content type, response topic, correlation data and user properties, with the property length before them; checks every string. */
export function propertiesSize(topic: string, properties: PublishProperties): number {
  let props = 0;
  if (properties.contentType !== undefined) props += 1 + headerSize(topic, HEADER.contentType, 'value', properties.contentType);
  const responseTopic = properties.responseTopic;
  if (responseTopic !== undefined) {
    // A Response Topic is a topic name: wildcards in it are a protocol error that closes the connection.
    if (typeof responseTopic === 'string' && /[+#]/.test(responseTopic)) {
      throw new InvalidHeaderError(topic, REPLY_HEADER.replyTo, 'value', 'wildcard', responseTopic.search(/[+#]/));
    }
    props += 1 + headerSize(topic, REPLY_HEADER.replyTo, 'value', responseTopic);
  }
  const correlation = properties.correlationData;
  if (correlation !== undefined) {
    if (correlation.byteLength > MQTT_MAX_STRING) throw new InvalidHeaderError(topic, REPLY_HEADER.correlationId, 'value', 'too-long', correlation.byteLength);
    props += 3 + correlation.byteLength;
  }
  const user = properties.userProperties;
  for (const name in user) {
    const value = user[name];
    const nameBytes = headerSize(topic, name, 'name', name);
    if (!Array.isArray(value)) {
      props += 1 + nameBytes + headerSize(topic, name, 'value', value);
      continue;
    }
    for (const v of value as unknown[]) props += 1 + nameBytes + headerSize(topic, name, 'value', v);
  }
  return varintSize(props) + props;
}

/** The whole PUBLISH packet size, as compared with a broker's Maximum Packet Size. */
export function packetSize(remaining: number): number {
  return 1 + varintSize(remaining) + remaining;
}
