import { createRequire } from 'node:module';
import { ConfigurationError } from '@ktransport/broker';
import type { IClientPublishOptions, IPublishPacket } from 'mqtt';
import { MqttClient } from 'mqtt';
import { encodePacket } from './packets.js';

/**
 * The protocol layer: every mqtt.js internal this transport relies on, in this
 * one file. mqtt.js's public hooks cannot do two things this transport needs:
 *
 * - Deferred acknowledgements without head-of-line blocking. `handleMessage`
 *   and `customHandleAcks` hold back the PUBACK/PUBREC until their callback
 *   runs, but mqtt.js reads no further packet until then: one slow handler
 *   would stall every subscription of the connection and the PUBACKs of the
 *   handlers' own publishes. So both hooks answer at once with DEFERRED, which
 *   makes mqtt.js skip its acknowledgement and read on, and the
 *   acknowledgement is written later, when the message was handled, through
 *   the client's private packet writer.
 * - A fast send path: mqtt.js writes a packet field by field (see packets.ts),
 *   and copies publish options over defaults, which is slow for a key the
 *   defaults lack, such as `properties` (most of a microsecond per publish on
 *   Node 20). PUBLISH and acknowledgement packets are written as one buffer,
 *   and publish properties travel under `dup`, a key the defaults have.
 *
 * mqtt is therefore pinned exactly (package.json) to the release these were
 * written and tested against, `assertMqttJs` refuses any other release or a
 * missing internal with a ConfigurationError when a broker is constructed,
 * and test/mqttjs.test.ts pins each behaviour listed here.
 */
export const MQTT_JS_VERSION = '5.16.0';

/** Every mqtt.js internal relied on, and what for (shown by the guard's error). */
export const MQTT_JS_INTERNALS: readonly string[] = [
  'MqttClient#_sendPacket(packet, cb, cbStorePut, noStore): writes the deferred PUBACK/PUBREC; wrapped to move carried publish properties onto the packet',
  'MqttClient#_writePacket(packet, cb): replaced to write PUBLISH and acknowledgements as one buffer (noop, stream, options.protocolVersion and the packetsend event used as mqtt.js does)',
  'MqttClient#handleMessage(packet, callback): QoS 0 and 1 arrive there; callback(error) makes mqtt.js skip its PUBACK and read the next packet',
  'options.customHandleAcks(topic, payload, packet, done), also consulted on MQTT 3.1.1 when set after construction: done(error) for QoS 2 sends no PUBREC and stores nothing; a PUBREL for an unstored packet is answered with PUBCOMP',
  'publish(topic, payload, options): options spread over defaults that have dup; dup copied onto the packet unchanged before _sendPacket',
  'mqtt-packet/constants MQTT5_PUBACK_PUBREC_CODES, the module instance mqtt.js loads: reason 0x95 added (see acceptPacketTooLarge)',
];

/** The client's private members used here. */
interface Internals {
  // Properties, not methods: both are read, replaced and called with the client as `this`.
  _writePacket: (this: Internals, packet: { cmd: string }, cb?: (error?: Error) => void) => void;
  _sendPacket: (
    this: Internals,
    packet: { cmd: string; messageId?: number; dup?: unknown; properties?: unknown },
    cb?: unknown,
    cbStorePut?: unknown,
    noStore?: unknown,
  ) => void;
  readonly noop: unknown;
  readonly stream: NodeJS.WritableStream & { cork?(): void; uncork?(): void };
  readonly options: { protocolVersion?: number };
  emit(event: 'packetsend', packet: unknown): boolean;
}

/**
 * Loads a module as mqtt's own `require` does (from mqtt's location), so that
 * it is the instance mqtt.js uses; undefined where it cannot be found (another
 * layout, a bundle).
 */
function fromMqtt(id: string): unknown {
  try {
    return createRequire(createRequire(import.meta.url).resolve('mqtt'))(id);
  } catch {
    return undefined;
  }
}

let installed: string | null | undefined;

/** The version of the mqtt package this module loads; undefined where its package.json cannot be read (a bundle). */
function installedVersion(): string | undefined {
  if (installed === undefined) {
    const version = (fromMqtt('mqtt/package.json') as { version?: unknown } | undefined)?.version;
    installed = typeof version === 'string' ? version : null;
  }
  return installed ?? undefined;
}

/** The client methods relied on, checked on MqttClient.prototype. */
const METHODS = ['_sendPacket', '_writePacket', 'handleMessage', '_noop'] as const;

/**
 * Refuses, with a ConfigurationError that names both versions and what is
 * missing, an mqtt.js other than the one pinned or one without the methods
 * listed in MQTT_JS_INTERNALS. (Where mqtt's package.json cannot be read, as in
 * a bundle, the methods alone decide; the 0x95 table is best effort.) Cheap:
 * called by every MqttBroker constructor.
 */
export function assertMqttJs(): void {
  const version = installedVersion();
  const proto = MqttClient.prototype as unknown as Partial<Record<string, unknown>>;
  const missing = METHODS.filter((name) => typeof proto[name] !== 'function');
  if ((version === undefined || version === MQTT_JS_VERSION) && missing.length === 0) return;
  const found = missing.length > 0 ? `; missing: MqttClient#${missing.join(', MqttClient#')}` : '';
  throw new ConfigurationError(
    `@ktransport/transport-mqtt works on internals of mqtt ${MQTT_JS_VERSION} and found mqtt ${version ?? 'of unknown version'}${found}. ` +
      `Install mqtt ${MQTT_JS_VERSION} (the exact version this package depends on; remove any override of it). Relied on: ${MQTT_JS_INTERNALS.join('; ')}`,
  );
}

/** Answer to handleMessage/customHandleAcks: mqtt.js sends no acknowledgement and reads on (see above). */
export const DEFERRED = new Error('ktransport: acknowledgement deferred until the handler settles');

/**
 * Takes every QoS 0/1/2 PUBLISH of `client` before mqtt.js acknowledges it and
 * tells mqtt.js not to: `receive` gets it (QoS 2 before mqtt.js stores it, so a
 * PUBREL that follows finds nothing and is answered with PUBCOMP). Returns the
 * writer of the acknowledgements the caller sends later.
 */
export function deferAcknowledgements(client: MqttClient, receive: (packet: IPublishPacket, topic: string) => void): (qos: number, messageId: number) => void {
  client.handleMessage = (packet, callback) => {
    // QoS 0 and 1 arrive here; QoS 2 never does (see customHandleAcks).
    if (packet.qos === 2) return callback();
    receive(packet, packet.topic);
    callback(packet.qos === 1 ? DEFERRED : undefined);
  };
  // Set after construction so that it applies to MQTT 3.1.1 too (mqtt.js only installs it for 5).
  client.options.customHandleAcks = (topic: string, _payload: Buffer, packet: IPublishPacket, done: (error: Error | number) => void) => {
    if (packet.qos !== 2) return done(0);
    receive(packet, topic);
    done(DEFERRED);
  };
  const target = client as unknown as Internals;
  return (qos, messageId) => target._sendPacket({ cmd: qos === 2 ? 'pubrec' : 'puback', messageId });
}

/** PUBLISH properties on their way from `clientPublishOptions` to `_sendPacket`. */
class PropertiesCarrier {
  constructor(readonly properties: IPublishPacket['properties']) {}
}

/** Options for `client.publish` (of a client `installPacketWriter` was applied to): the properties travel in a carrier. */
export function clientPublishOptions(qos: 0 | 1 | 2, retain: boolean, properties: IPublishPacket['properties']): IClientPublishOptions {
  if (properties === undefined) return { qos, retain };
  return { qos, retain, dup: new PropertiesCarrier(properties) as unknown as boolean };
}

/**
 * Makes `client` write PUBLISH and acknowledgement packets as one buffer
 * (packets.ts) and unpack carried properties; once, right after it is created.
 */
export function installPacketWriter(client: MqttClient): void {
  acceptPacketTooLarge();
  const target = client as unknown as Internals;
  const send = target._sendPacket;
  target._sendPacket = function (this: Internals, packet, cb, cbStorePut, noStore) {
    const carrier = packet.dup;
    if (carrier instanceof PropertiesCarrier) {
      packet.properties = carrier.properties;
      packet.dup = false;
    }
    send.call(this, packet, cb, cbStorePut, noStore);
  };
  const original = target._writePacket;
  let corked: Internals['stream'] | undefined;
  const uncork = (): void => {
    const stream = corked;
    corked = undefined;
    stream?.uncork?.();
  };
  target._writePacket = function (this: Internals, packet, cb) {
    const chunks = encodePacket(packet, this.options.protocolVersion === 5);
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

function packetTooLargeCodes(): Record<number, string> | undefined {
  const codes = (fromMqtt('mqtt-packet/constants') as { MQTT5_PUBACK_PUBREC_CODES?: unknown } | undefined)?.MQTT5_PUBACK_PUBREC_CODES;
  return codes !== null && typeof codes === 'object' ? (codes as Record<number, string>) : undefined;
}

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
 * broken parser. Where the module cannot be found (a bundle), nothing is
 * changed and 0x95 stays a parse error.
 */
let packetTooLargeAccepted = false;

function acceptPacketTooLarge(): void {
  if (packetTooLargeAccepted) return;
  packetTooLargeAccepted = true;
  const codes = packetTooLargeCodes();
  if (codes && codes[0x95] === undefined) codes[0x95] = 'Packet too large';
}
