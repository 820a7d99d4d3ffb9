import type { IPublishPacket } from 'mqtt';

/**
 * PUBLISH and acknowledgement packets encoded into one buffer (two for large
 * payloads, which are not copied), byte for byte as mqtt-packet writes them.
 *
 * mqtt-packet's stream writer makes one `stream.write()` per field: a PUBLISH
 * with a content type and one user property takes fourteen writes through
 * Node's Writable machinery, and that bookkeeping, not the bytes, was the
 * largest cost of a publish in the benchmarks (bench/). The protocol layer
 * (mqttjs.ts) writes what these functions return; a packet they do not cover
 * (undefined) is left to mqtt.js. Pure functions: nothing here knows mqtt.js.
 *
 * Strings over 65,535 bytes never get here: the sender refuses them (and any
 * string MQTT cannot carry) before calling mqtt.js (headers.ts). The checks
 * below that hand such a packet back are a last resort, not a path taken.
 */

/** Payloads larger than this are written as a second chunk instead of being copied. */
const COPY_LIMIT = 2_048;
const CONTENT_TYPE = 0x03;
const USER_PROPERTY = 0x26;

function varintSize(value: number): number {
  return value < 128 ? 1 : value < 16_384 ? 2 : value < 2_097_152 ? 3 : 4;
}

function writeVarint(buffer: Buffer, offset: number, value: number): number {
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    buffer[offset++] = byte;
  } while (value > 0);
  return offset;
}

function writeString(buffer: Buffer, offset: number, text: string, bytes: number): number {
  buffer.writeUInt16BE(bytes, offset);
  buffer.write(text, offset + 2, bytes, 'utf8');
  return offset + 2 + bytes;
}

/** Acknowledgement packet types and their control packet type numbers. */
const ACK_TYPES: Record<string, number | undefined> = { puback: 4, pubrec: 5, pubrel: 6, pubcomp: 7 };

/** The bytes of a packet this module encodes, or undefined for any other (mqtt.js writes it). */
export function encodePacket(packet: { readonly cmd: string }, v5: boolean): [Buffer] | [Buffer, Buffer] | undefined {
  if (packet.cmd === 'publish') return encodePublish(packet as IPublishPacket, v5);
  return ACK_TYPES[packet.cmd] === undefined ? undefined : encodeAck(packet, v5);
}

interface AckPacket {
  readonly cmd: string;
  readonly messageId?: number;
  readonly reasonCode?: number;
  readonly dup?: boolean;
  readonly properties?: unknown;
}

/**
 * PUBACK, PUBREC, PUBREL and PUBCOMP without properties, byte for byte as
 * mqtt-packet writes them (a reason code and an empty property length unless the
 * reason code is 0 on MQTT 5).
 */
export function encodeAck(packet: AckPacket, v5: boolean): [Buffer] | undefined {
  const type = ACK_TYPES[packet.cmd];
  const { messageId: id, reasonCode } = packet;
  if (type === undefined || packet.properties !== undefined || typeof id !== 'number' || id < 0 || id > 0xffff) return undefined;
  if (reasonCode !== undefined && (!Number.isInteger(reasonCode) || reasonCode < 0 || reasonCode > 255)) return undefined;
  const pubrel = packet.cmd === 'pubrel';
  // A PUBREL with DUP is left to mqtt.js (mqtt-packet has no header for it).
  if (pubrel && packet.dup) return undefined;
  const header = (type << 4) | (pubrel ? 0x02 : 0);
  const long = v5 && reasonCode !== 0;
  const bytes = Buffer.allocUnsafe(long ? 6 : 4);
  bytes[0] = header;
  bytes[1] = long ? 4 : 2;
  bytes.writeUInt16BE(id, 2);
  if (long) {
    bytes[4] = reasonCode ?? 0;
    bytes[5] = 0;
  }
  return [bytes];
}

/** UTF-8 lengths of the user property names and values, reused between packets (encoding is synchronous). */
const lengths: number[] = [];

/** The packet's bytes, or undefined when it has something this encoder does not write (mqtt.js then does). */
export function encodePublish(packet: IPublishPacket, v5: boolean): [Buffer] | [Buffer, Buffer] | undefined {
  const { topic, payload, qos, messageId } = packet;
  if (typeof topic !== 'string' || topic.length === 0 || !Buffer.isBuffer(payload)) return undefined;
  if (qos !== 0 && qos !== 1 && qos !== 2) return undefined;
  const id = qos > 0 ? messageId : 0;
  if (typeof id !== 'number') return undefined;
  const topicBytes = Buffer.byteLength(topic);
  if (topicBytes > 0xffff) return undefined;
  let propertiesLength = 0;
  let contentType: string | undefined;
  let contentTypeBytes = 0;
  let user: Record<string, string | string[]> | undefined;
  let count = 0;
  if (v5) {
    const properties = packet.properties;
    for (const name in properties) {
      if (name === 'contentType') contentType = properties.contentType;
      else if (name === 'userProperties') user = properties.userProperties;
      else if ((properties as Record<string, unknown>)[name] !== undefined) return undefined;
    }
    if (contentType !== undefined) {
      if (typeof contentType !== 'string') return undefined;
      contentTypeBytes = Buffer.byteLength(contentType);
      if (contentTypeBytes > 0xffff) return undefined;
      propertiesLength += 3 + contentTypeBytes;
    }
    for (const name in user) {
      const value = user[name];
      const nameBytes = Buffer.byteLength(name);
      if (typeof value === 'string') {
        const valueBytes = Buffer.byteLength(value);
        if (nameBytes > 0xffff || valueBytes > 0xffff) return undefined;
        lengths[count++] = nameBytes;
        lengths[count++] = valueBytes;
        propertiesLength += 5 + nameBytes + valueBytes;
        continue;
      }
      if (!Array.isArray(value)) return undefined;
      for (const v of value) {
        if (typeof v !== 'string') return undefined;
        const valueBytes = Buffer.byteLength(v);
        if (nameBytes > 0xffff || valueBytes > 0xffff) return undefined;
        lengths[count++] = nameBytes;
        lengths[count++] = valueBytes;
        propertiesLength += 5 + nameBytes + valueBytes;
      }
    }
  }
  const variable = 2 + topicBytes + (qos > 0 ? 2 : 0) + (v5 ? varintSize(propertiesLength) + propertiesLength : 0);
  const remaining = variable + payload.length;
  if (remaining > 268_435_455) return undefined;
  const inline = payload.length <= COPY_LIMIT;
  const head = Buffer.allocUnsafe(1 + varintSize(remaining) + variable + (inline ? payload.length : 0));
  head[0] = 0x30 | (packet.dup ? 0x08 : 0) | (qos << 1) | (packet.retain ? 0x01 : 0);
  let offset = writeVarint(head, 1, remaining);
  offset = writeString(head, offset, topic, topicBytes);
  if (qos > 0) offset = head.writeUInt16BE(id, offset);
  if (v5) {
    offset = writeVarint(head, offset, propertiesLength);
    if (contentType !== undefined) {
      head[offset++] = CONTENT_TYPE;
      offset = writeString(head, offset, contentType, contentTypeBytes);
    }
    let i = 0;
    const pair = (name: string, value: string): void => {
      const nameBytes = lengths[i++];
      const valueBytes = lengths[i++];
      if (nameBytes === undefined || valueBytes === undefined) throw new Error('ktransport: user property lengths out of step with the properties');
      head[offset++] = USER_PROPERTY;
      offset = writeString(head, offset, name, nameBytes);
      offset = writeString(head, offset, value, valueBytes);
    };
    for (const name in user) {
      const value = user[name];
      if (typeof value === 'string') pair(name, value);
      else if (value !== undefined) for (const v of value) pair(name, v);
    }
  }
  if (!inline) return [head, payload];
  payload.copy(head, offset);
  return [head];
}
