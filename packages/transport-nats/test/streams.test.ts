import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigurationError } from '@ktransport/broker';
import { waitFor } from '@ktransport/broker/testing';
import { NatsBroker } from '@ktransport/transport-nats';
import { type Admin, admin, ensureNats, fast, unique } from './helpers.js';

let setup: Admin;
const made: string[] = [];

beforeAll(async () => {
  await ensureNats();
  setup = await admin();
}, 30_000);

afterAll(async () => {
  for (const name of made) await setup.jsm.streams.delete(name).catch(() => undefined);
  await setup?.close();
}, 30_000);

describe('NatsBroker streams option', () => {
  it('creates a missing stream at connect() with file storage and limits retention by default, and publishes into it', async () => {
    const name = unique('S');
    const base = unique('orders');
    made.push(name);
    const broker = new NatsBroker({ ...fast, streams: [{ name, subjects: [`${base}.>`] }] });
    await broker.connect();
    try {
      const info = await setup.jsm.streams.info(name);
      expect(info.config.subjects).toEqual([`${base}.>`]);
      expect(info.config.storage).toBe('file');
      expect(info.config.retention).toBe('limits');
      expect(info.config.num_replicas).toBe(1);
      expect(info.config.max_msgs).toBe(-1);
      const got: string[] = [];
      await broker.subscribe(`${base}/#`, (m) => void got.push(m.topic));
      await broker.publish(`${base}/eu/created`, { id: 1 });
      await waitFor(
        () => got.length === 1,
        10_000,
        () => 'nothing received',
      );
      expect(got).toEqual([`${base}/eu/created`]);
    } finally {
      await broker.disconnect();
    }
  });

  it('memory storage and limits (maxAgeMs, maxMessages, maxBytes) are applied to a created stream', async () => {
    const name = unique('S');
    made.push(name);
    const broker = new NatsBroker({
      ...fast,
      streams: [{ name, subjects: [unique('mem')], storage: 'memory', maxAgeMs: 60_000, maxMessages: 10, maxBytes: 100_000 }],
    });
    await broker.connect();
    await broker.disconnect();
    const info = await setup.jsm.streams.info(name);
    expect(info.config.storage).toBe('memory');
    expect(info.config.max_age).toBe(60_000 * 1_000_000);
    expect(info.config.max_msgs).toBe(10);
    expect(info.config.max_bytes).toBe(100_000);
  });

  it('binds to an existing stream without changing it, and create: false refuses a missing one at connect()', async () => {
    const subject = unique('platform');
    const name = await setup.stream(subject, unique('PLATFORM'));
    const bound = new NatsBroker({ ...fast, streams: [{ name, subjects: ['ignored.subject'], create: false }] });
    await bound.connect();
    await bound.publish(subject, { n: 1 });
    await bound.disconnect();
    const info = await setup.jsm.streams.info(name);
    expect(info.config.subjects).toEqual([subject, `${subject}.>`]);
    expect(info.state.messages).toBe(1);
    // create: true (the default) leaves an existing stream as it is too.
    const again = new NatsBroker({ ...fast, streams: [{ name, subjects: ['other.subject'], maxMessages: 1 }] });
    await again.connect();
    await again.disconnect();
    expect((await setup.jsm.streams.info(name)).config.max_msgs).toBe(-1);
    const missing = new NatsBroker({ ...fast, streams: [{ name: unique('MISSING'), subjects: [], create: false }] });
    await expect(missing.connect()).rejects.toBeInstanceOf(ConfigurationError);
    expect(missing.state).toBe('disconnected');
  });
});
