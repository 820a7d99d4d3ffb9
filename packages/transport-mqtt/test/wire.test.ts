import { randomUUID } from 'node:crypto';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureMosquitto, SHARED_URL } from './mosquitto.js';
import { defined, open, topic, waitFor } from './helpers.js';

beforeAll(ensureMosquitto);

/**
 * PUBLISH packets are written as one buffer by the transport (src/packets.ts), not
 * field by field by mqtt.js: a plain mqtt.js subscriber must see exactly what
 * was published, whatever the QoS, size, retain flag or characters.
 */
describe('PUBLISH packets on the wire', () => {
  let reader: mqtt.MqttClient;
  const seen: { topic: string; payload: Buffer; packet: mqtt.IPublishPacket }[] = [];

  beforeAll(async () => {
    reader = await mqtt.connectAsync(SHARED_URL, { protocolVersion: 5, clientId: `wire-reader-${randomUUID().slice(0, 8)}` });
    reader.on('message', (t, payload, packet) => seen.push({ topic: t, payload, packet }));
  });
  afterAll(async () => {
    await reader.endAsync();
  });

  for (const version of [5, 4] as const) {
    it(`carries payload, QoS, retain and properties exactly (MQTT ${version === 5 ? '5' : '3.1.1'})`, async () => {
      const t = `${topic('wire')}/grüße/✓`;
      await reader.subscribeAsync(t, { qos: 2 });
      const broker = await open({ protocolVersion: version, messageIds: true });
      const cases = [
        { qos: 0 as const, size: 0 },
        { qos: 1 as const, size: 100 },
        { qos: 2 as const, size: 2_048 },
        { qos: 1 as const, size: 3_000 },
        { qos: 0 as const, size: 100_000 },
        { qos: 2 as const, size: 70_000 },
      ];
      for (const [i, c] of cases.entries()) {
        const bytes = new Uint8Array(c.size).map((_, j) => (j * 7 + i) % 256);
        const headers = version === 5 ? { 'x-ümlaut': 'wert ✓', 'x-case': String(i) } : undefined;
        await broker.publish(t, bytes, { codec: 'bytes', qos: c.qos, ...(headers ? { headers } : {}), ...(version === 5 ? { key: `k-${i}` } : {}) });
      }
      await waitFor(
        () => seen.filter((s) => s.topic === t).length === cases.length,
        10_000,
        () => `${seen.filter((s) => s.topic === t).length} of ${cases.length} arrived`,
      );
      const got = seen.filter((s) => s.topic === t);
      for (const [i, c] of cases.entries()) {
        // QoS 2 arrives after its PUBREL: find each message by its (distinct) size.
        const { payload, packet } = defined(
          got.find((s) => s.payload.length === c.size),
          `the message of ${c.size} bytes`,
        );
        expect(payload.equals(Buffer.from(new Uint8Array(c.size).map((_, j) => (j * 7 + i) % 256)))).toBe(true);
        expect(packet.qos).toBe(c.qos);
        if (version === 5) {
          expect(packet.properties?.contentType).toBe('application/octet-stream');
          expect(packet.properties?.userProperties).toMatchObject({ 'x-ümlaut': 'wert ✓', 'x-case': String(i), 'message-key': `k-${i}` });
          expect(packet.properties?.userProperties?.['message-id']).toMatch(/^[0-9a-f-]{36}$/);
        } else {
          expect(packet.properties?.userProperties).toBeUndefined();
        }
      }
      await reader.unsubscribeAsync(t);
    });
  }

  it('keeps the retain flag', async () => {
    const t = topic('wire-retained');
    const broker = await open();
    await broker.publish(t, { kept: true }, { retain: true, qos: 1 });
    const late = await mqtt.connectAsync(SHARED_URL, { protocolVersion: 5, clientId: `wire-late-${randomUUID().slice(0, 8)}` });
    try {
      const message = new Promise<mqtt.IPublishPacket>((resolve) => late.on('message', (_t, _p, packet) => resolve(packet)));
      await late.subscribeAsync(t, { qos: 1 });
      const packet = await message;
      expect(packet.retain).toBe(true);
      expect(JSON.parse(packet.payload.toString())).toEqual({ kept: true });
    } finally {
      await broker.publish(t, new Uint8Array(0), { codec: 'bytes', retain: true, qos: 1 });
      await late.endAsync();
    }
  });
});
