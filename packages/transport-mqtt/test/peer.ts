import { createRequire } from 'node:module';
import { createServer, type Socket } from 'node:net';
import type { IConnackPacket, Packet } from 'mqtt';

/**
 * A scripted MQTT peer for protocol-level tests of how the client handles
 * answers no available broker gives (a CONNACK saying shared subscriptions are
 * not available, a SUBACK refusing one, a 3.1.1-style "unacceptable protocol
 * version"). It is not a broker and stands in for none: it answers CONNECT,
 * SUBSCRIBE and PINGREQ as scripted and records what it received. Loopback only.
 */

interface PacketParser {
  on(event: 'packet', listener: (packet: Packet) => void): void;
  on(event: 'error', listener: (error: Error) => void): void;
  parse(chunk: Buffer): number;
}

interface MqttPacket {
  parser(options: { protocolVersion: number }): PacketParser;
  generate(packet: object, options: { protocolVersion: number }): Buffer;
}

// mqtt-packet is mqtt.js' own codec: loaded from mqtt's location, as mqtt.js loads it.
const fromMqtt = createRequire(createRequire(import.meta.url).resolve('mqtt'));
const mqttPacket = fromMqtt('mqtt-packet') as MqttPacket;

export interface PeerScript {
  /** The CONNACK sent for a CONNECT, and the protocol version it is encoded with (4 writes a 3.1.1 CONNACK). */
  connack: { packet: Omit<IConnackPacket, 'cmd'>; protocolVersion: 4 | 5 };
  /** The SUBACK reason code for one subscription filter. Default: the QoS asked for. */
  grant?: (filter: string, qos: number) => number;
}

export interface Peer {
  readonly port: number;
  readonly url: string;
  /** Every packet received, in order. */
  readonly received: Packet[];
  close(): Promise<void>;
}

export async function scriptedPeer(script: PeerScript): Promise<Peer> {
  const received: Packet[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    const send = (packet: object, protocolVersion: number): void => void socket.write(mqttPacket.generate(packet, { protocolVersion }));
    parser.on('error', () => socket.destroy());
    parser.on('packet', (packet) => {
      received.push(packet);
      if (packet.cmd === 'connect') send({ cmd: 'connack', ...script.connack.packet }, script.connack.protocolVersion);
      else if (packet.cmd === 'subscribe') {
        const granted = packet.subscriptions.map((s) => script.grant?.(s.topic, s.qos) ?? s.qos);
        send({ cmd: 'suback', messageId: packet.messageId, granted }, 5);
      } else if (packet.cmd === 'unsubscribe') send({ cmd: 'unsuback', messageId: packet.messageId, granted: packet.unsubscriptions.map(() => 0) }, 5);
      else if (packet.cmd === 'pingreq') send({ cmd: 'pingresp' }, 5);
      else if (packet.cmd === 'disconnect') socket.end();
    });
    socket.on('data', (chunk: Buffer) => void parser.parse(chunk));
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (typeof address === 'object' && address) resolve(address.port);
      else reject(new Error('no port'));
    });
  });
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    received,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
