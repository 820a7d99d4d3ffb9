import type { Headers } from '@ktransport/broker';
import { HEADER } from '@ktransport/broker';
import type { IPublishPacket } from 'mqtt';

/** User property that carries `PublishOptions.key` (MQTT has no record key). */
export const KEY_HEADER = 'message-key';

type PublishProperties = NonNullable<IPublishPacket['properties']>;

/**
 * MQTT 5 publish properties for outgoing headers: `content-type` becomes the
 * contentType property, every other header a user property (`traceparent`,
 * `tracestate` and `message-id` included).
 */
export function toProperties(headers: Headers): PublishProperties {
  const properties: PublishProperties = {};
  let user: Record<string, string> | undefined;
  for (const name in headers) {
    const value = headers[name]!;
    if (name === HEADER.contentType) properties.contentType = value;
    else (user ??= {})[name] = value;
  }
  if (user) properties.userProperties = user;
  return properties;
}

/**
 * Headers of a received message: user properties (a repeated name keeps every
 * value, joined by ", ") and the contentType property as `content-type`.
 */
export function fromPacket(packet: IPublishPacket): Headers {
  const headers: Headers = {};
  const properties = packet.properties;
  if (!properties) return headers;
  const user = properties.userProperties;
  for (const name in user) {
    const value = user[name]!;
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  if (properties.contentType !== undefined) headers[HEADER.contentType] = properties.contentType;
  return headers;
}

const utf8 = (text: string): number => Buffer.byteLength(text, 'utf8');

function varintSize(value: number): number {
  return value < 128 ? 1 : value < 16_384 ? 2 : value < 2_097_152 ? 3 : 4;
}

/** The size in bytes of the remaining length of a PUBLISH packet, without its fixed header. */
export function remainingLength(topic: string, payloadBytes: number, qos: number, properties: PublishProperties | undefined): number {
  let size = 2 + utf8(topic) + (qos > 0 ? 2 : 0) + payloadBytes;
  if (properties) {
    let props = 0;
    if (properties.contentType !== undefined) props += 1 + 2 + utf8(properties.contentType);
    for (const [name, value] of Object.entries(properties.userProperties ?? {})) {
      for (const v of Array.isArray(value) ? value : [value]) props += 1 + 2 + utf8(name) + 2 + utf8(v);
    }
    size += varintSize(props) + props;
  }
  return size;
}

/** The whole PUBLISH packet size, as compared with a broker's Maximum Packet Size. */
export function packetSize(remaining: number): number {
  return 1 + varintSize(remaining) + remaining;
}
