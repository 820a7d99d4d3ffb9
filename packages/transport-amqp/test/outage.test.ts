import { BrokerError, type ConnectionState, PublishError } from '@ktransport/broker';
import { PayloadTooLargeError } from '@ktransport/transport-amqp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open, outcome, sleep, states, unique, waitFor } from './helpers.js';
import { RabbitMq } from './rabbitmq.js';

/** The private node's `max_message_size`: small, so that the broker's own refusal can be seen. */
const BROKER_MAX_MESSAGE = 64 * 1024;

let rabbit: RabbitMq;
beforeAll(async () => {
  rabbit = await RabbitMq.start({ config: () => [`max_message_size = ${BROKER_MAX_MESSAGE}`] });
}, 120_000);
afterAll(async () => {
  await rabbit?.destroy();
}, 60_000);

describe('a broker restart in the middle of a stream (private node)', () => {
  it('publishers see success or a typed error, never a silent drop; every confirmed message is consumed; state goes reconnecting and back promptly', async () => {
    const broker = await open({ url: rabbit.url, reconnectPeriodMs: 200 });
    const seen: { state: ConnectionState; at: number }[] = [];
    broker.onStateChange((state) => seen.push({ state, at: Date.now() }));
    const t = unique('restart-stream');
    const consumed = new Set<number>();
    await broker.subscribe<{ n: number }>(t, (m) => void consumed.add(m.body.n), { group: unique('g'), concurrency: 4 });
    // A subscription without a group: its exclusive queue is made again on the new connection.
    const alone = new Set<number>();
    await broker.subscribe<{ n: number }>(t, (m) => void alone.add(m.body.n));
    const acked = new Set<number>();
    const failures: unknown[] = [];
    let publishing = true;
    let next = 0;
    const publisher = async (): Promise<void> => {
      while (publishing && next < 100_000) {
        const n = next++;
        await broker.publish(t, { n }, { key: `k${n % 5}` }).then(
          () => acked.add(n),
          (error: unknown) => failures.push(error),
        );
        if (failures.length > 0 && broker.state !== 'connected') await sleep(20);
      }
    };
    const publishers = [publisher(), publisher(), publisher(), publisher()];
    try {
      await waitFor(
        () => acked.size >= 300,
        20_000,
        () => `acked before the restart ${acked.size}`,
      );
      const stopping = Date.now();
      await rabbit.stop();
      expect(
        seen.find((s) => s.state === 'reconnecting' && s.at >= stopping),
        'reconnecting while the broker is down',
      ).toBeDefined();
      await rabbit.restart();
      const restarted = Date.now();
      const before = acked.size;
      await waitFor(
        () => acked.size >= before + 300,
        30_000,
        () => `acked after the restart ${acked.size - before}`,
      );
      const back = seen.find((s) => s.state === 'connected' && s.at >= stopping);
      expect(back, 'connected again').toBeDefined();
      expect(defined(back).at - restarted).toBeLessThan(5_000);
    } finally {
      publishing = false;
      await Promise.all(publishers);
    }
    expect(failures.filter((e) => !(e instanceof BrokerError))).toEqual([]);
    expect(failures.length).toBeGreaterThan(0);
    await waitFor(
      () => [...acked].every((n) => consumed.has(n)),
      30_000,
      () => `unconsumed ${[...acked].filter((n) => !consumed.has(n)).length} of ${acked.size}`,
    );
    const last = Math.max(...acked);
    await waitFor(
      () => alone.has(last),
      10_000,
      () => `the subscription without a group did not get ${last} after the restart`,
    );
  }, 120_000);
});

function defined<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('missing');
  return value;
}

describe('limits the broker enforces (private node)', () => {
  it("a payload over the broker's max_message_size rejects with PayloadTooLargeError; the connection and other subscriptions go on", async () => {
    const broker = await open({ url: rabbit.url });
    const seen = states(broker);
    const t = unique('too-large');
    const got: number[] = [];
    await broker.subscribe<number>(t, (m) => void got.push(m.body));
    const error = await outcome(broker.publish(t, 'x'.repeat(BROKER_MAX_MESSAGE + 1_000), { codec: 'text' }));
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect(error).toMatchObject({ limit: undefined, retriable: false });
    await broker.publish(t, 1);
    await broker.publish(t, 2);
    await waitFor(
      () => got.length === 2,
      5_000,
      () => `got ${got.join(',')}`,
    );
    expect(seen).toEqual(['connected']);
  });

  it('publishTimeoutMs: while the broker blocks publishers (memory alarm), publish rejects with a retriable PublishError in time', async () => {
    const broker = await open({ url: rabbit.url, publishTimeoutMs: 500 });
    const t = unique('blocked');
    await broker.publish(t, 0);
    await rabbit.ctl('set_vm_memory_high_watermark', '0');
    try {
      // The alarm blocks connections that publish; give it a moment to be raised.
      await sleep(500);
      const started = Date.now();
      const error = await outcome(broker.publish(t, 1));
      expect(error).toBeInstanceOf(PublishError);
      expect((error as PublishError).retriable).toBe(true);
      expect(String(error)).toMatch(/publishTimeoutMs \(500 ms\)/);
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      await rabbit.ctl('set_vm_memory_high_watermark', '0.4');
    }
  });
});
