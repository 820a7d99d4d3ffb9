import { createRequire } from 'node:module';
import type { IClientPublishOptions, IPublishPacket, MqttClient } from 'mqtt';

/**
 * Writing PUBLISH and acknowledgement packets as one buffer.
 *
 * mqtt.js hands every packet to mqtt-packet's stream writer, which makes one
 * `stream.write()` per field: a PUBLISH with a content type and one user
 * property takes fourteen writes through Node's Writable machinery, and that
 * bookkeeping, not the bytes, was the largest cost of a publish in the
 * benchmarks (bench/). For the PUBLISH packets this transport sends (string
 * topic, Buffer payload, at most a content type and user properties) and for
 * acknowledgements without properties, the packet is encoded here into one
 * buffer instead (two for large payloads, which are not copied); the bytes are
 * the same. Every other packet, and any PUBLISH with other properties (a topic
 * alias, ...), goes through mqtt.js unchanged.
 *
 * Handing the properties to `publish` costs too: mqtt.js copies the options
 * over its defaults (`{ ...defaults, ...options }`), and on Node 20 a key the
 * defaults lack, such as `properties`, sends that copy down a slow path of
 * most of a microsecond per publish. `clientPublishOptions` therefore puts the
 * properties in a carrier under `dup`, a key the defaults have, and
 * `_sendPacket` moves them onto the packet before mqtt.js stores or writes it.
 *
 * Strings over 65,535 bytes never get here: the sender refuses them (and any
 * string MQTT cannot carry) before calling mqtt.js (headers.ts). The checks
 * below that hand such a packet to mqtt.js are a last resort, not a path taken.
 *
 * This relies on mqtt.js' `_writePacket(packet, cb)` and
 * `_sendPacket(packet, cb, cbStorePut, noStore)` (mqtt 5.x): where one is
 * missing, its part is not installed and mqtt.js works as before. This file is
 * the only one that knows that detail.
 */
interface PacketWriter {
  // Properties, not methods: both are read, replaced and called with the client as `this`.
  _writePacket: (this: PacketWriter, packet: { cmd: string }, cb?: (error?: Error) => void) => void;
  _sendPacket: (
    this: PacketWriter,
    packet: { cmd: string; dup?: unknown; properties?: unknown },
    cb?: unknown,
    cbStorePut?: unknown,
    noStore?: unknown,
  ) => void;
  readonly noop: unknown;
  readonly stream: NodeJS.WritableStream & { cork?(): void; uncork?(): void };
  readonly options: { protocolVersion?: number };
  emit(event: 'packetsend', packet: unknown): boolean;
}

/** PUBLISH properties on their way from `clientPublishOptions` to `_sendPacket`. */
class PropertiesCarrier {
  constructor(readonly properties: IPublishPacket['properties']) {}
}

/** Clients whose `_sendPacket` unpacks a PropertiesCarrier. */
const carrying = new WeakSet<object>();

/** Options for `client.publish`: the properties travel in a carrier where the client unpacks one. */
export function clientPublishOptions(client: MqttClient, qos: 0 | 1 | 2, retain: boolean, properties: IPublishPacket['properties']): IClientPublishOptions {
  if (properties === undefined) return { qos, retain };
  if (!carrying.has(client)) return { qos, retain, properties };
  return { qos, retain, dup: new PropertiesCarrier(properties) as unknown as boolean };
}

/** Payloads larger than this are written as a second chunk instead of being copied. */
const COPY_LIMIT = 2_048;
const CONTENT_TYPE = 0x03;
const USER_PROPERTY = 0x26;

/**
 * Reason 0x95 ("packet too large") in PUBACK and PUBREC.
 *
 * Mosquitto answers a QoS 1/2 PUBLISH larger than its `message_size_limit`
 * with PUBACK (PUBREC) reason 0x95. MQTT 5 does not list 0x95 for these
 * packets, and mqtt-packet 9's parser rejects it: it reports an error, and on
 * its next `parse()` it starts over and throws away every byte it had buffered,
 * so the acknowledgements that followed are lost and later publishes wait
 * forever. The parser is made inside mqtt.js' `connect()`, with no hook per
 * client, and it looks reason codes up in the table of mqtt-packet's
 * `constants` module. So 0x95 is added to that table, once, in the very module
 * instance mqtt.js loads (resolved from mqtt's own location, as its `require`
 * does): mqtt.js' acknowledgement handler then fails the publish with reason
 * code 0x95, which `publishFailure` turns into a PayloadTooLargeError.
 *
 * This is the only change to a shared module: other mqtt.js clients in the
 * process accept 0x95 in PUBACK/PUBREC too, as a publish error instead of a
 * broken parser. Where the module cannot be found (another layout, a bundle),
 * nothing is changed and 0x95 stays a parse error.
 */
let packetTooLargeAccepted = false;

function acceptPacketTooLarge(): void {
  if (packetTooLargeAccepted) return;
  packetTooLargeAccepted = true;
  try {
    const fromMqtt = createRequire(createRequire(import.meta.url).resolve('mqtt'));
    const constants = fromMqtt('mqtt-packet/constants') as { MQTT5_PUBACK_PUBREC_CODES?: Record<number, string> };
    const codes = constants.MQTT5_PUBACK_PUBREC_CODES;
    if (codes && typeof codes === 'object' && codes[0x95] === undefined) codes[0x95] = 'Packet too large';
  } catch {
    // Not installed beside mqtt: see above.
  }
}

/** Makes `client` write the packets described above as one buffer and unpack carried properties (once, right after it is created). */
export function installPacketWriter(client: MqttClient): void {
  acceptPacketTooLarge();
  const target = client as unknown as PacketWriter;
  const send = target._sendPacket;
  if (typeof send === 'function') {
    target._sendPacket = function (this: PacketWriter, packet, cb, cbStorePut, noStore) {
      const carrier = packet.dup;
      if (carrier instanceof PropertiesCarrier) {
        packet.properties = carrier.properties;
        packet.dup = false;
      }
      send.call(this, packet, cb, cbStorePut, noStore);
    };
    carrying.add(client);
  }
  const original = target._writePacket;
  if (typeof original !== 'function') return;
  let corked: PacketWriter['stream'] | undefined;
  const uncork = (): void => {
    const stream = corked;
    corked = undefined;
    stream?.uncork?.();
  };
  target._writePacket = function (this: PacketWriter, packet, cb) {
    const v5 = this.options.protocolVersion === 5;
    const chunks = packet.cmd === 'publish' ? encodePublish(packet as IPublishPacket, v5) : ACK_TYPES[packet.cmd] ? encodeAck(packet, v5) : undefined;
    if (!chunks) return original.call(this, packet, cb);
    this.emit('packetsend', packet);
    const stream = this.stream;
    // As mqtt-packet does: packets written in one tick leave in one writev.
    if (corked !== stream && typeof stream.cork === 'function') {
      if (corked) uncork();
      corked = stream;
      stream.cork();
      process.nextTick(uncork);
    }
    let written = stream.write(chunks[0]);
    if (chunks.length === 2) written = stream.write(chunks[1]);
    if (!written && cb && cb !== this.noop) stream.once('drain', cb);
    else if (cb) cb();
  };
}

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
