import type { IConnackPacket, IPublishPacket, MqttClient } from 'mqtt';
import { deferAcknowledgements } from './mqttjs.js';

/**
 * Acknowledging after the handler settles, without serializing handlers.
 *
 * The protocol layer (mqttjs.ts) takes every PUBLISH before mqtt.js would
 * acknowledge it; the acknowledgement is written here, later, once every
 * delivery made from the packet settled as handled.
 *
 * - QoS 1: PUBACK is held.
 * - QoS 2: PUBREC is held (the packet is taken before mqtt.js stores it); the
 *   PUBREL that follows finds no stored packet and mqtt.js answers it with
 *   PUBCOMP. A message without PUBREC is redelivered by the broker.
 * - A delivery given up (nack: shutdown, unsubscribe out of time) leaves the
 *   packet unacknowledged: the broker sends it again to the next connection of
 *   a persistent session. Until then it counts against the Receive Maximum.
 * - An acknowledgement is only written on the connection the packet came in on.
 *   If that connection was lost and the session resumed, the broker resends
 *   the packet with DUP set: a copy of a message still being handled is adopted
 *   (acknowledged when that handling settles), a copy of one already handled is
 *   acknowledged at once. A new session forgets both.
 */

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
  readonly #write: (qos: number, messageId: number) => void;
  /** Unsettled QoS 1/2 packets by packet id. */
  readonly #open = new Map<number, Incoming>();
  /** Handled packets whose acknowledgement was lost with a connection: id -> topic. */
  readonly #owed = new Map<number, string>();
  #session = 0;
  #closed = false;

  constructor(client: MqttClient, onMessage: (incoming: Incoming) => void) {
    this.#client = client;
    this.#write = deferAcknowledgements(client, (packet, topic) => {
      const incoming = this.#receive(packet, topic);
      if (incoming) onMessage(incoming);
    });
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
    this.#write(qos, messageId);
  }
}
