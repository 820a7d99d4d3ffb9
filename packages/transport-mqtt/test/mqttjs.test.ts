import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ConfigurationError } from '@ktransport/broker';
import { MqttBroker } from '@ktransport/transport-mqtt';
import mqtt from 'mqtt';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ensureMosquitto, SHARED_URL } from './mosquitto.js';
import { sleep, topic, waitFor } from './helpers.js';

/**
 * The protocol layer (src/mqttjs.ts) works on mqtt.js internals, with mqtt
 * pinned exactly. These tests fail, each naming the internal, when a new pin
 * (or an override) brings an mqtt.js without them or where they behave
 * differently: update src/mqttjs.ts before moving the pin.
 */

const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
const installed = (createRequire(new URL('../package.json', import.meta.url))('mqtt/package.json') as { version: string }).version;

describe('the mqtt.js this package runs on', () => {
  it('is pinned exactly in package.json, and that version is installed', () => {
    expect(manifest.dependencies.mqtt).toMatch(/^\d+\.\d+\.\d+$/);
    expect(installed).toBe(manifest.dependencies.mqtt);
    expect(() => new MqttBroker()).not.toThrow();
  });

  for (const name of ['_sendPacket', '_writePacket', 'handleMessage', '_noop']) {
    it(`refuses an mqtt.js without MqttClient#${name}: a ConfigurationError naming the versions, when a broker is constructed`, () => {
      const proto = mqtt.MqttClient.prototype as unknown as Record<string, unknown>;
      const saved = Object.getOwnPropertyDescriptor(proto, name);
      expect(saved, `MqttClient.prototype.${name}`).toBeDefined();
      Reflect.deleteProperty(proto, name);
      try {
        let error: unknown;
        try {
          new MqttBroker();
        } catch (caught) {
          error = caught;
        }
        expect(error).toBeInstanceOf(ConfigurationError);
        expect((error as Error).message).toContain(`works on internals of mqtt ${manifest.dependencies.mqtt} and found mqtt ${installed}`);
        expect((error as Error).message).toContain(`missing: MqttClient#${name}`);
      } finally {
        if (saved) Object.defineProperty(proto, name, saved);
      }
    });
  }
});

describe('mqtt.js behaviour the protocol layer relies on (raw mqtt.js clients, shared Mosquitto)', () => {
  beforeAll(ensureMosquitto);
  const clients: mqtt.MqttClient[] = [];
  const client = async (options: mqtt.IClientOptions): Promise<mqtt.MqttClient> => {
    const c = await mqtt.connectAsync(SHARED_URL, { clientId: `mqttjs-${randomUUID().slice(0, 8)}`, ...options });
    clients.push(c);
    return c;
  };
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  });

  it('handleMessage: callback(error) for QoS 1 sends no PUBACK, and mqtt.js reads the next packets at once', async () => {
    const t = topic('mqttjs-qos1');
    const reader = await client({ protocolVersion: 5 });
    const sent: string[] = [];
    reader.on('packetsend', (packet) => void sent.push(packet.cmd));
    const seen: number[] = [];
    reader.handleMessage = (packet, callback) => {
      if (packet.messageId !== undefined) seen.push(packet.messageId);
      callback(new Error('deferred'));
    };
    await reader.subscribeAsync(t, { qos: 1 });
    const writer = await client({ protocolVersion: 5 });
    for (let n = 0; n < 3; n++) await writer.publishAsync(t, String(n), { qos: 1 });
    await waitFor(
      () => seen.length === 3,
      5_000,
      () => `received ${seen.length} of 3 with none acknowledged`,
    );
    await sleep(100);
    expect(sent).not.toContain('puback');
  });

  it('customHandleAcks set after construction applies on MQTT 3.1.1; done(error) for QoS 2 sends no PUBREC and stores nothing, so a PUBREL is answered with PUBCOMP', async () => {
    const t = topic('mqttjs-qos2');
    const reader = await client({ protocolVersion: 4 });
    reader.on('error', () => undefined); // mqtt.js reports the deferring error; the transport ignores it too
    const sent: string[] = [];
    reader.on('packetsend', (packet) => void sent.push(packet.cmd));
    const messages: string[] = [];
    reader.on('message', (_topic, payload) => void messages.push(payload.toString()));
    const taken: number[] = [];
    reader.options.customHandleAcks = (_topic: string, _payload: Buffer, packet: mqtt.IPublishPacket, done: (error: Error | number) => void) => {
      if (packet.messageId !== undefined) taken.push(packet.messageId);
      done(new Error('deferred'));
    };
    await reader.subscribeAsync(t, { qos: 2 });
    const writer = await client({ protocolVersion: 5 });
    await writer.publishAsync(t, 'once', { qos: 2 });
    await waitFor(
      () => taken.length === 1,
      5_000,
      () => 'customHandleAcks was not called for a QoS 2 PUBLISH on MQTT 3.1.1',
    );
    await sleep(100);
    expect(sent).not.toContain('pubrec');
    // The PUBREC the transport writes later, through _sendPacket:
    const internals = reader as unknown as { _sendPacket(packet: { cmd: string; messageId: number }): void };
    internals._sendPacket({ cmd: 'pubrec', messageId: taken[0] ?? -1 });
    await waitFor(
      () => sent.includes('pubcomp'),
      5_000,
      () => `no PUBCOMP after the PUBREL; sent ${sent.join(',')}`,
    );
    expect(messages).toEqual([]);
  });

  it('publish copies the dup option onto the packet unchanged before _sendPacket (the properties carrier)', async () => {
    const c = await client({ protocolVersion: 5 });
    const internals = c as unknown as { _sendPacket: (packet: { cmd: string; dup?: unknown }, ...rest: unknown[]) => void };
    const send = internals._sendPacket;
    const seen: unknown[] = [];
    internals._sendPacket = function (this: unknown, packet, ...rest) {
      if (packet.cmd === 'publish') seen.push(packet.dup);
      send.call(this, { ...packet, dup: false }, ...rest);
    };
    const marker = { carried: true };
    await c.publishAsync(topic('mqttjs-dup'), 'x', { qos: 1, dup: marker as unknown as boolean });
    expect(seen).toEqual([marker]);
  });
});
