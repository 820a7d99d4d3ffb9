import { ConfigurationError } from '@ktransport/broker';
import type { IConnackPacket, IPublishPacket, MqttClient } from 'mqtt';

/**
 * Acknowledging after the handler settles, without serializing handlers.
 *
 * mqtt.js offers `handleMessage` and `customHandleAcks` to delay a PUBACK/PUBREC,
 * but it reads no further packet until their callback runs: one slow handler
 * would stall every subscription of the connection (and the PUBACKs of our own
 * publishes). So both hooks answer at once with `DEFERRED`, which makes mqtt.js
 * skip its acknowledgement and keep reading; the acknowledgement is written
 * later, when every delivery made from the packet has settled, through the
 * client's packet writer. This file is the only one that knows these details.
 *
 * - QoS 1: PUBACK is held (mqtt.js hands QoS 1 to `handleMessage`).
 * - QoS 2: PUBREC is held (taken in `customHandleAcks` before mqtt.js stores the
 *   packet); the PUBREL that follows finds no stored packet and mqtt.js answers
 *   it with PUBCOMP. A message without PUBREC is redelivered by the broker.
 * - An acknowledgement is only written on the connection the packet came in on.
 *   If that connection was lost and the session resumed, the broker resends
 *   the packet with DUP set: a copy of a message still being handled is adopted
 *   (acknowledged when that handling settles), a copy of one already handled is
 *   acknowledged at once. A new session forgets both.
 */
export const DEFERRED = new Error('ktransport: acknowledgement deferred until the handler settles');

interface AckPacket {
  readonly cmd: 'puback' | 'pubrec';
  readonly messageId: number;
}

interface PacketWriter {
  _sendPacket(packet: AckPacket): void;
}

/** One received PUBLISH; acknowledged once every delivery made from it settled as handled. */
export class Incoming {
  #pending = 0;
  #abandoned = false;
  /** The connection the packet (or its adopted resend) arrived on. */
  stream: unknown;

  constructor(
    readonly packet: IPublishPacket,
    readonly topic: string,
    stream: unknown,
    readonly session: number,
    readonly acks: Acks,
  ) {
    this.stream = stream;
  }

  /** Counts one more delivery to settle. */
  hold(): void {
    this.#pending++;
  }

  /** Settles one delivery: `handled` false leaves the message unacknowledged for the broker to redeliver. */
  release(handled: boolean): void {
    if (!handled) this.#abandoned = true;
    if (--this.#pending === 0) this.acks.settled(this, !this.#abandoned);
  }

  /** Settles a packet nobody takes: acknowledged (dropped) or left for the broker. */
  finish(acknowledge: boolean): void {
    this.acks.settled(this, acknowledge);
  }
}

/** Receives PUBLISH packets from one mqtt.js client and writes their acknowledgements. */
export class Acks {
  readonly #client: MqttClient;
  readonly #write: (packet: AckPacket) => void;
  /** Unsettled QoS 1/2 packets by packet id. */
  readonly #open = new Map<number, Incoming>();
  /** Handled packets whose acknowledgement was lost with a connection: id -> topic. */
  readonly #owed = new Map<number, string>();
  #session = 0;
  #closed = false;

  constructor(client: MqttClient, onMessage: (incoming: Incoming) => void) {
    const send = (client as unknown as Partial<PacketWriter>)._sendPacket;
    if (typeof send !== 'function') {
      throw new ConfigurationError('this mqtt.js version has no MqttClient._sendPacket; @ktransport/transport-mqtt needs mqtt 5.x');
    }
    this.#client = client;
    this.#write = (packet) => send.call(client, packet);
    const receive = (packet: IPublishPacket, topic: string): void => {
      const incoming = this.#receive(packet, topic);
      if (incoming) onMessage(incoming);
    };
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
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'connack') this.#connack(packet);
    });
  }

  /** No acknowledgement is written any more (the connection is being closed on purpose). */
  close(): void {
    this.#closed = true;
  }

  #connack(packet: IConnackPacket): void {
    if (packet.sessionPresent) return;
    this.#session++;
    this.#open.clear();
    this.#owed.clear();
  }

  #receive(packet: IPublishPacket, topic: string): Incoming | undefined {
    const id = packet.messageId;
    if (packet.qos > 0 && id !== undefined && packet.dup) {
      const open = this.#open.get(id);
      if (open && open.topic === topic) {
        open.stream = this.#client.stream;
        return undefined;
      }
      if (this.#owed.get(id) === topic) {
        this.#owed.delete(id);
        this.#acknowledge(packet.qos, id);
        return undefined;
      }
    }
    const incoming = new Incoming(packet, topic, this.#client.stream, this.#session, this);
    if (packet.qos > 0 && id !== undefined) this.#open.set(id, incoming);
    return incoming;
  }

  /** Called by Incoming once all its deliveries settled. */
  settled(incoming: Incoming, handled: boolean): void {
    const { qos, messageId: id } = incoming.packet;
    if (qos === 0 || id === undefined) return;
    if (this.#open.get(id) === incoming) this.#open.delete(id);
    if (!handled || this.#closed || incoming.session !== this.#session) return;
    if (this.#client.connected && this.#client.stream === incoming.stream) this.#acknowledge(qos, id);
    else this.#owed.set(id, incoming.topic);
  }

  #acknowledge(qos: number, messageId: number): void {
    this.#write({ cmd: qos === 2 ? 'pubrec' : 'puback', messageId });
  }
}
