import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionError, PublishError } from '@ktransport/broker';
import { sleep, waitFor } from '@ktransport/broker/testing';
import { NatsBroker } from '@ktransport/transport-nats';
import { type Admin, admin, fast, publishRetrying, unique, waitForAsync } from './helpers.js';
import { PrivateNats } from './servers.js';

/** A server of this file's own: frozen (SIGSTOP) and restarted. */
const nats = new PrivateNats();
let setup: Admin;

beforeAll(async () => {
  await nats.start();
  setup = await admin(nats.url);
}, 30_000);

afterAll(async () => {
  await setup?.close().catch(() => undefined);
  await nats.remove();
}, 30_000);

describe('NatsBroker timing options', () => {
  it('publishTimeoutMs bounds a publish whose PubAck does not come (a frozen server): a retriable PublishError', async () => {
    const topic = unique('frozen');
    await setup.stream(topic);
    const broker = new NatsBroker({ ...fast, url: nats.url, publishTimeoutMs: 600 });
    await broker.connect();
    try {
      await broker.publish(topic, { n: 1 });
      nats.signal('SIGSTOP');
      await sleep(200);
      const begun = Date.now();
      const error = await broker.publish(topic, { n: 2 }).catch((e: unknown) => e);
      const took = Date.now() - begun;
      nats.signal('SIGCONT');
      expect(error).toBeInstanceOf(PublishError);
      expect((error as PublishError).retriable).toBe(true);
      expect(took).toBeGreaterThanOrEqual(550);
      expect(took).toBeLessThan(2_000);
      await waitFor(
        () => broker.state === 'connected',
        10_000,
        () => `state ${broker.state}`,
      );
      await broker.publish(topic, { n: 3 });
    } finally {
      nats.signal('SIGCONT');
      await broker.disconnect();
    }
  });

  it('a publish waiting for its PubAck when the connection is lost, and a publish while reconnecting, reject at once with a retriable ConnectionError', async () => {
    const topic = unique('lost');
    const stream = await setup.stream(topic);
    const broker = new NatsBroker({ ...fast, url: nats.url, publishTimeoutMs: 20_000 });
    await broker.connect();
    try {
      await broker.publish(topic, { n: 1 });
      nats.signal('SIGSTOP');
      // The signal is delivered asynchronously: the server must not answer the next publish.
      await sleep(200);
      const pending = broker.publish(topic, { n: 2 }).catch((e: unknown) => e);
      await sleep(200);
      const begun = Date.now();
      await nats.stop('SIGKILL');
      const error = await pending;
      expect(error).toBeInstanceOf(ConnectionError);
      expect((error as ConnectionError).retriable).toBe(true);
      expect(Date.now() - begun).toBeLessThan(3_000);
      expect(broker.state).toBe('reconnecting');
      const refused = await broker.publish(topic, { n: 3 }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(ConnectionError);
      expect(Date.now() - begun).toBeLessThan(3_000);
      await nats.start();
      await waitFor(
        () => broker.state === 'connected',
        10_000,
        () => `state ${broker.state}`,
      );
      // The other cases' admin connection reconnects too, and JetStream answers again.
      await waitForAsync(
        () =>
          setup.jsm.streams.info(stream).then(
            () => true,
            () => false,
          ),
        10_000,
        () => 'JetStream does not answer after the restart',
      );
      await publishRetrying(() => broker.publish(topic, { n: 4 }));
    } finally {
      await broker.disconnect();
      nats.signal('SIGCONT');
      await nats.start();
    }
  });

  it('redeliveryDelayMs is the wait before a failed message runs again', async () => {
    const topic = unique('redeliver');
    await setup.stream(topic);
    const broker = new NatsBroker({ ...fast, url: nats.url, redeliveryDelayMs: 700 });
    await broker.connect();
    try {
      const attempts: number[] = [];
      await broker.subscribe(topic, () => {
        attempts.push(Date.now());
        if (attempts.length === 1) throw new Error('first attempt fails');
      });
      await broker.publish(topic, { n: 1 });
      await waitFor(
        () => attempts.length === 2,
        10_000,
        () => `attempts ${attempts.length}`,
      );
      const [first = 0, second = 0] = attempts;
      expect(second - first).toBeGreaterThanOrEqual(650);
      await sleep(300);
      expect(attempts).toHaveLength(2);
    } finally {
      await broker.disconnect();
    }
  });

  it('reconnectWaitMs spaces the reconnection attempts', async () => {
    const back = async (reconnectWaitMs: number): Promise<number> => {
      const broker = new NatsBroker({ ...fast, url: nats.url, reconnectWaitMs });
      await broker.connect();
      try {
        await nats.stop();
        await waitFor(
          () => broker.state === 'reconnecting',
          3_000,
          () => `state ${broker.state}`,
        );
        const begun = Date.now();
        await nats.start();
        await waitFor(
          () => broker.state === 'connected',
          15_000,
          () => `state ${broker.state}`,
        );
        return Date.now() - begun;
      } finally {
        await broker.disconnect();
      }
    };
    const quick = await back(100);
    const slow = await back(3_000);
    expect(quick).toBeLessThan(1_500);
    expect(slow).toBeGreaterThan(quick);
    expect(slow).toBeGreaterThan(1_500);
  }, 40_000);
});
