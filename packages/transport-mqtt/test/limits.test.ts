import { PayloadTooLargeError } from '@ktransport/transport-mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Mosquitto } from './mosquitto.js';
import { open, sleep, topic, waitFor } from './helpers.js';

/** How a promise settled within `ms`: 'ok', the error, or 'pending'. */
function within(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('pending'), ms)));
  return Promise.race([promise.then(() => 'ok', (error: unknown) => error), late]).finally(() => clearTimeout(timer));
}

describe("the broker's Maximum Packet Size (Mosquitto max_packet_size, announced in CONNACK)", () => {
  let small: Mosquitto;
  beforeAll(async () => {
    small = await Mosquitto.start({ persistence: false, global: ['allow_anonymous true', 'max_packet_size 2048'] });
  });
  afterAll(async () => {
    await small?.destroy();
  });

  it('is checked before sending, so the connection survives an oversized message', async () => {
    const broker = await open({ url: small.url });
    const t = topic('packet');
    const got: number[] = [];
    await broker.subscribe<Uint8Array>(t, (m) => void got.push(m.body.byteLength), { codec: 'bytes' });
    for (const qos of [0, 1, 2] as const) {
      const error = await within(broker.publish(t, new Uint8Array(4_096), { codec: 'bytes', qos }), 1_000);
      expect(error).toBeInstanceOf(PayloadTooLargeError);
      expect((error as PayloadTooLargeError).limit).toBe(2_048);
    }
    await broker.publish(t, new Uint8Array(1_000), { codec: 'bytes' });
    await waitFor(() => got.length === 1, 5_000, () => 'small message lost');
    expect(broker.state).toBe('connected');
  });
});

/**
 * Mosquitto's message_size_limit is not announced in CONNACK (2.0.11 sends a
 * Maximum Packet Size only for max_packet_size), so the sender cannot check it
 * beforehand: Mosquitto answers an oversized QoS 1 PUBLISH with PUBACK reason
 * 0x95 and QoS 2 with PUBREC 0x95, and drops an oversized QoS 0 one silently.
 */
describe("Mosquitto's message_size_limit (reason 0x95)", () => {
  let limited: Mosquitto;
  beforeAll(async () => {
    limited = await Mosquitto.start({ persistence: false, global: ['allow_anonymous true', 'message_size_limit 1000'] });
  });
  afterAll(async () => {
    await limited?.destroy();
  });

  it('rejects an oversized QoS 1 or 2 publish promptly with PayloadTooLargeError, and later publishes flow on the same connection', async () => {
    const broker = await open({ url: limited.url });
    const seen = [broker.state];
    broker.onStateChange((s) => void seen.push(s));
    const t = topic('size-limit');
    const got: number[] = [];
    await broker.subscribe<Uint8Array>(t, (m) => void got.push(m.body.byteLength), { codec: 'bytes' });
    for (const qos of [1, 2, 1, 2] as const) {
      const started = Date.now();
      const error = await within(broker.publish(t, new Uint8Array(2_000), { codec: 'bytes', qos }), 3_000);
      expect(error, `QoS ${qos}`).toBeInstanceOf(PayloadTooLargeError);
      expect((error as PayloadTooLargeError).retriable).toBe(false);
      expect((error as Error).message).toMatch(/0x95/);
      expect(Date.now() - started).toBeLessThan(1_000);
      // Several at once: the acknowledgements after the refused one are read too.
      const small = Array.from({ length: 10 }, () => broker.publish(t, new Uint8Array(100), { codec: 'bytes', qos }));
      expect(await within(Promise.all(small), 3_000)).toBe('ok');
    }
    await waitFor(() => got.length === 40, 5_000, () => `${got.length} of 40 small messages arrived`);
    expect(got.every((size) => size === 100)).toBe(true);
    expect(seen).toEqual(['connected']);
  });

  it('drops an oversized QoS 0 publish silently (written, never delivered); maxPayloadBytes refuses it beforehand', async () => {
    const broker = await open({ url: limited.url });
    const t = topic('size-limit-qos0');
    const got: number[] = [];
    await broker.subscribe<Uint8Array>(t, (m) => void got.push(m.body.byteLength), { codec: 'bytes', qos: 0 });
    await broker.publish(t, new Uint8Array(2_000), { codec: 'bytes', qos: 0 }); // resolves once written
    await broker.publish(t, new Uint8Array(100), { codec: 'bytes', qos: 0 });
    await waitFor(() => got.length === 1, 5_000, () => 'the small message did not arrive');
    await sleep(200);
    expect(got).toEqual([100]);

    const bounded = await open({ url: limited.url, maxPayloadBytes: 900 });
    const error = await within(bounded.publish(t, new Uint8Array(2_000), { codec: 'bytes', qos: 0 }), 1_000);
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect(error).toMatchObject({ size: 2_000, limit: 900 });
  });
});
