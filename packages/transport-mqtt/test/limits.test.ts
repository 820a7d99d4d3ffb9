import { PayloadTooLargeError } from '@ktransport/transport-mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Mosquitto } from './mosquitto.js';
import { open, sleep, topic, waitFor, within } from './helpers.js';

/** Waits until `count()` reaches `target` or stops growing for `stillMs`; returns the count. */
async function settledCount(count: () => number, target: number, stillMs: number): Promise<number> {
  let last = -1;
  let since = Date.now();
  for (let i = 0; i < 600 && count() < target; i++) {
    if (count() !== last) [last, since] = [count(), Date.now()];
    else if (Date.now() - since >= stillMs) break;
    await sleep(50);
  }
  return count();
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
    await waitFor(
      () => got.length === 1,
      5_000,
      () => 'small message lost',
    );
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
    await waitFor(
      () => got.length === 40,
      5_000,
      () => `${got.length} of 40 small messages arrived`,
    );
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
    await waitFor(
      () => got.length === 1,
      5_000,
      () => 'the small message did not arrive',
    );
    await sleep(200);
    expect(got).toEqual([100]);

    const bounded = await open({ url: limited.url, maxPayloadBytes: 900 });
    const error = await within(bounded.publish(t, new Uint8Array(2_000), { codec: 'bytes', qos: 0 }), 1_000);
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect(error).toMatchObject({ size: 2_000, limit: 900 });
  });
});

/**
 * A stock Mosquitto sends a client at most max_inflight_messages (20) QoS 1/2
 * messages unacknowledged, unless the client's CONNECT says otherwise (MQTT 5
 * Receive Maximum), queues max_queued_messages (1000) more and drops the rest.
 */
describe('a Mosquitto at its stock configuration', () => {
  let stock: Mosquitto;
  beforeAll(async () => {
    stock = await Mosquitto.start({ persistence: false, stock: true });
  });
  afterAll(async () => {
    await stock?.destroy();
  });

  it('delivers every one of a burst of 2,000 QoS 1 messages to a subscriber whose handler takes 2 ms (default options, MQTT 5)', async () => {
    const subscriber = await open({ url: stock.url });
    const t = topic('stock-burst');
    const got = new Set<number>();
    await subscriber.subscribe<{ n: number }>(t, async (m) => {
      await sleep(2);
      got.add(m.body.n);
    });
    const publisher = await open({ url: stock.url });
    await Promise.all(Array.from({ length: 2_000 }, (_, n) => publisher.publish(t, { n })));
    expect(await settledCount(() => got.size, 2_000, 3_000)).toBe(2_000);
  }, 60_000);

  /** Publishes 2,000 QoS 1 messages while a 3.1.1 subscriber acknowledges none, then counts what it gets. */
  async function burstToHeldSubscriber(mosquitto: Mosquitto): Promise<number> {
    const subscriber = await open({ url: mosquitto.url, protocolVersion: 4 });
    const t = topic('v311-burst');
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const got = new Set<number>();
    await subscriber.subscribe<{ n: number }>(t, async (m) => {
      await gate;
      got.add(m.body.n);
    });
    const publisher = await open({ url: mosquitto.url });
    await Promise.all(Array.from({ length: 2_000 }, (_, n) => publisher.publish(t, { n })));
    release();
    return settledCount(() => got.size, 2_000, 1_500);
  }

  it('drops, on MQTT 3.1.1 (no Receive Maximum), what exceeds max_inflight_messages + max_queued_messages unacknowledged', async () => {
    const delivered = await burstToHeldSubscriber(stock);
    expect(delivered).toBeGreaterThanOrEqual(1_000);
    expect(delivered).toBeLessThanOrEqual(1_100); // 20 in flight + 1,000 queued; the broker dropped the rest
  }, 60_000);

  it('delivers all of it on MQTT 3.1.1 once max_queued_messages is raised (the README recommendation)', async () => {
    const tuned = await Mosquitto.start({ persistence: false, stock: true, global: ['allow_anonymous true', 'max_queued_messages 10000'] });
    try {
      expect(await burstToHeldSubscriber(tuned)).toBe(2_000);
    } finally {
      await tuned.destroy();
    }
  }, 60_000);
});
