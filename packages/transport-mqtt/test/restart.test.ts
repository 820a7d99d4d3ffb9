import type { ConnectionState } from '@ktransport/broker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Mosquitto } from './mosquitto.js';
import { open, sleep, topic, waitFor } from './helpers.js';

let mosquitto: Mosquitto;
beforeAll(async () => {
  mosquitto = await Mosquitto.start({ persistence: true });
});
afterAll(async () => {
  await mosquitto?.destroy();
});

describe('broker restart mid-stream', () => {
  it('delivers all of 5,000 QoS 1 messages to a persistent session while Mosquitto is stopped and started', async () => {
    const t = topic('restart');
    const total = 5_000;
    const received = new Set<number>();
    let deliveries = 0;
    let unlabelled = 0;
    const states: ConnectionState[] = [];
    const subscriber = await open({ url: mosquitto.url, clientId: `ktm-restart-${t}`, clean: false, reconnectPeriodMs: 200 });
    subscriber.onStateChange((s) => void states.push(s));
    await subscriber.subscribe<{ n: number }>(
      t,
      (m) => {
        deliveries++;
        // Publishes mqtt.js sends again after the reconnect must still carry their properties.
        if (m.headers['content-type'] !== 'application/json') unlabelled++;
        received.add(m.body.n);
      },
      { concurrency: 16 },
    );
    const publisher = await open({ url: mosquitto.url, reconnectPeriodMs: 200 });

    let next = 0;
    let retries = 0;
    const worker = async (): Promise<void> => {
      while (next < total) {
        const n = next++;
        // Bounded retries: the broker is away for about a second.
        for (let attempt = 1; ; attempt++) {
          try {
            await publisher.publish(t, { n });
            break;
          } catch (error) {
            if (attempt >= 300) throw error;
            retries++;
            await sleep(50);
          }
        }
      }
    };
    const publishing = Promise.all(Array.from({ length: 16 }, worker));
    await waitFor(
      () => next >= total / 3,
      30_000,
      () => `published ${next}`,
    );
    await mosquitto.stop();
    await sleep(500);
    await mosquitto.start();
    await publishing;
    await waitFor(
      () => received.size === total,
      60_000,
      () => `received ${received.size} of ${total}`,
    );
    expect(retries).toBeGreaterThan(0);
    expect(states).toContain('reconnecting');
    expect(subscriber.state).toBe('connected');
    expect(deliveries).toBeGreaterThanOrEqual(total);
    expect(unlabelled).toBe(0);
  }, 120_000);
});
