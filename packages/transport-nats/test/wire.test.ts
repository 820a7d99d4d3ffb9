import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigurationError, type Message, SubscribeError } from '@ktransport/broker';
import { sleep, waitFor } from '@ktransport/broker/testing';
import { InvalidHeaderError, InvalidTopicError, NatsBroker, NoStreamError, PayloadTooLargeError } from '@ktransport/transport-nats';
import { headers as natsHeaders } from '@nats-io/nats-core';
import { createHash } from 'node:crypto';
import { AckPolicy, jetstream } from '@nats-io/jetstream';
import { type Admin, admin, ensureNats, fast, NATS_URL, unique } from './helpers.js';

let setup: Admin;
let broker: NatsBroker;

beforeAll(async () => {
  await ensureNats();
  setup = await admin();
  broker = new NatsBroker({ ...fast, url: NATS_URL });
  await broker.connect();
}, 30_000);

afterAll(async () => {
  await broker?.disconnect();
  await setup?.close();
}, 30_000);

describe('NatsBroker on the wire', () => {
  it('maps topic levels to subject tokens: a/b/c is the subject a.b.c, + is *, a final # is >, and the received topic is the ktransport one', async () => {
    const base = unique('map');
    await setup.stream(base);
    const plus: Message[] = [];
    const rest: Message[] = [];
    await broker.subscribe(`${base}/+/temp`, (m) => void plus.push(m));
    await broker.subscribe(`${base}/#`, (m) => void rest.push(m));
    await broker.publish(`${base}/kitchen/temp`, { t: 21 });
    await broker.publish(`${base}/kitchen/temp/raw`, { t: 22 });
    // A raw publish to the mapped subject reaches the subscription with the topic mapped back.
    await jetstream(setup.nc).publish(`${base}.cellar.temp`, JSON.stringify({ t: 9 }));
    await waitFor(
      () => plus.length === 2 && rest.length === 3,
      10_000,
      () => `plus ${plus.length} rest ${rest.length}`,
    );
    expect(plus.map((m) => m.topic).sort()).toEqual([`${base}/cellar/temp`, `${base}/kitchen/temp`]);
    expect(rest.map((m) => m.topic).sort()).toEqual([`${base}/cellar/temp`, `${base}/kitchen/temp`, `${base}/kitchen/temp/raw`]);
    const stored = await setup.jsm.streams.getMessage(`S-${base.replace(/[^A-Za-z0-9_-]/g, '_')}`, { seq: 1 });
    expect(stored?.subject).toBe(`${base}.kitchen.temp`);
  });

  it('refuses topics with ".", "*", ">", whitespace or empty levels (publish: InvalidTopicError; subscribe: ConfigurationError)', async () => {
    for (const topic of ['a.b', 'a*', 'a/>', 'a/+', 'a/#', 'a b', 'a\tb', '/a', 'a//b', 'a/', '']) {
      const error = await broker.publish(topic, 1).catch((e: unknown) => e);
      expect(error, topic).toBeInstanceOf(InvalidTopicError);
      expect((error as InvalidTopicError).retriable).toBe(false);
    }
    for (const filter of ['a.b', 'a/#/b', 'a/b+', 'a b']) {
      await expect(broker.subscribe(filter, () => undefined)).rejects.toBeInstanceOf(ConfigurationError);
    }
    expect(broker.state).toBe('connected');
  });

  it('publishing to a subject no stream captures rejects with a NoStreamError at once, not a hang', async () => {
    const begun = Date.now();
    const error = await broker.publish(unique('nostream'), { n: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoStreamError);
    expect((error as NoStreamError).retriable).toBe(false);
    expect(Date.now() - begun).toBeLessThan(2_000);
    await expect(broker.subscribe(unique('nostream'), () => undefined)).rejects.toBeInstanceOf(SubscribeError);
  });

  it('refuses headers NATS cannot carry before sending, and the connection stays up', async () => {
    const topic = unique('hdr');
    await setup.stream(topic);
    const bad: Record<string, string>[] = [{ 'with space': 'x' }, { 'with:colon': 'x' }, { ok: 'line\r\nInjected: 1' }, { ok: 'nul\u0000' }, { é: 'x' }];
    for (const headers of bad) {
      const error = await broker.publish(topic, 1, { headers }).catch((e: unknown) => e);
      expect(error, JSON.stringify(headers)).toBeInstanceOf(InvalidHeaderError);
      expect((error as InvalidHeaderError).retriable).toBe(false);
    }
    await expect(broker.publish(topic, 1, { msgId: 'a\nb' })).rejects.toBeInstanceOf(InvalidHeaderError);
    const got: Message[] = [];
    await broker.subscribe(topic, (m) => void got.push(m), { deliverPolicy: 'all' });
    await broker.publish(topic, 2, { headers: { 'x-unicode': 'é ✓', 'X-Case': 'Kept' }, key: 'k1' });
    await waitFor(
      () => got.length === 1,
      10_000,
      () => 'nothing received',
    );
    expect(got[0]?.body).toBe(2);
    expect(got[0]?.headers['x-unicode']).toBe('é ✓');
    expect(got[0]?.headers['X-Case']).toBe('Kept');
    expect(got[0]?.headers['content-type']).toMatch(/^application\/json/);
    expect(got[0]?.key).toBe('k1');
    expect(got[0]?.offset).toBe('1');
    expect(got[0]?.id).toBe('1');
    expect(broker.state).toBe('connected');
  });

  it('refuses a message over the server max_payload (from its INFO) with a PayloadTooLargeError, and the connection stays up', async () => {
    const topic = unique('big');
    await setup.stream(topic);
    const limit = setup.nc.info?.max_payload ?? 0;
    expect(limit).toBe(1024 * 1024);
    const error = await broker.publish(topic, new Uint8Array(limit), { codec: 'bytes' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect((error as PayloadTooLargeError).limit).toBe(limit);
    expect((error as PayloadTooLargeError).retriable).toBe(false);
    await broker.publish(topic, new Uint8Array(limit - 1_000), { codec: 'bytes' });
    expect(broker.state).toBe('connected');
  });

  it('msgId is the Nats-Msg-Id header: the stream stores a repeated id once', async () => {
    const topic = unique('dedupe');
    const name = await setup.stream(topic);
    await broker.publish(topic, { n: 1 }, { msgId: 'order-1' });
    await broker.publish(topic, { n: 1 }, { msgId: 'order-1' });
    await broker.publish(topic, { n: 2 }, { msgId: 'order-2' });
    const info = await setup.jsm.streams.info(name);
    expect(info.state.messages).toBe(2);
  });

  it('deliverPolicy: new (default) skips what the stream held before; all starts at the beginning', async () => {
    const topic = unique('policy');
    await setup.stream(topic);
    await broker.publish(topic, { n: 0 });
    const fresh: number[] = [];
    const all: number[] = [];
    await broker.subscribe<{ n: number }>(topic, (m) => void fresh.push(m.body.n));
    await broker.subscribe<{ n: number }>(topic, (m) => void all.push(m.body.n), { deliverPolicy: 'all' });
    await broker.publish(topic, { n: 1 });
    await waitFor(
      () => all.length === 2 && fresh.length === 1,
      10_000,
      () => `all ${all.join(',')} fresh ${fresh.join(',')}`,
    );
    expect(fresh).toEqual([1]);
    expect(all).toEqual([0, 1]);
    await expect(broker.subscribe(topic, () => undefined, { deliverPolicy: 'last' as 'all' })).rejects.toBeInstanceOf(ConfigurationError);
  });

  it('a group is a durable consumer named <group>_<hash of the subject>, kept after unsubscribe; no group is an ephemeral consumer deleted on unsubscribe', async () => {
    const topic = unique('durable');
    const stream = await setup.stream(topic);
    const group = unique('g');
    const grouped = await broker.subscribe(topic, () => undefined, { group });
    const plain = await broker.subscribe(topic, () => undefined);
    const names = async (): Promise<string[]> => {
      const out: string[] = [];
      for await (const c of setup.jsm.consumers.list(stream)) out.push(c.name);
      return out;
    };
    const before = await names();
    expect(before).toHaveLength(2);
    const durable = before.find((n) => n.startsWith(`${group}_`));
    expect(durable).toMatch(new RegExp(`^${group}_[0-9a-f]{8}$`));
    const info = await setup.jsm.consumers.info(stream, durable ?? '');
    expect(info.config.durable_name).toBe(durable);
    expect(info.config.filter_subject).toBe(topic);
    expect(info.config.ack_policy).toBe('explicit');
    expect(info.config.max_deliver).toBe(-1);
    const ephemeral = await setup.jsm.consumers.info(stream, before.find((n) => n !== durable) ?? '');
    expect(ephemeral.config.durable_name).toBeUndefined();
    expect(ephemeral.config.inactive_threshold).toBe(120_000_000_000);
    await grouped.unsubscribe();
    await plain.unsubscribe();
    expect(await names()).toEqual([durable]);
    await expect(broker.subscribe(topic, () => undefined, { group: 'a.b' })).rejects.toBeInstanceOf(ConfigurationError);
    // A consumer of the group's name that filters another subject is not taken over.
    const taken = unique('g');
    const name = `${taken}_${createHash('sha256').update(topic).digest('hex').slice(0, 8)}`;
    await setup.jsm.consumers.add(stream, { durable_name: name, ack_policy: AckPolicy.Explicit, filter_subject: `${topic}.other` });
    await expect(broker.subscribe(topic, () => undefined, { group: taken })).rejects.toBeInstanceOf(SubscribeError);
  });

  it('ackWaitMs and maxAckPending configure the consumers; a handler longer than ackWait is not redelivered (in-progress notices)', async () => {
    const topic = unique('ackwait');
    const stream = await setup.stream(topic);
    const slowBroker = new NatsBroker({ ...fast, ackWaitMs: 1_200, maxAckPending: 7 });
    await slowBroker.connect();
    try {
      let runs = 0;
      const group = unique('g');
      await slowBroker.subscribe(
        topic,
        async () => {
          runs++;
          await sleep(3_000);
        },
        { group },
      );
      const [consumer] = await (async () => {
        const out = [];
        for await (const c of setup.jsm.consumers.list(stream)) out.push(c);
        return out;
      })();
      expect(consumer?.config.ack_wait).toBe(1_200_000_000);
      expect(consumer?.config.max_ack_pending).toBe(7);
      await slowBroker.publish(topic, { n: 1 });
      await waitFor(
        () => runs === 1,
        5_000,
        () => 'not started',
      );
      await sleep(3_500);
      expect(runs).toBe(1);
      const info = await setup.jsm.consumers.info(stream, consumer?.name ?? '');
      expect(info.num_redelivered).toBe(0);
      expect(info.num_ack_pending).toBe(0);
    } finally {
      await slowBroker.disconnect();
    }
  });

  it('raw headers from a foreign publisher: repeated names are joined, the payload is the bytes as sent', async () => {
    const topic = unique('foreign');
    await setup.stream(topic);
    const got: Message[] = [];
    await broker.subscribe(topic, (m) => void got.push(m), { codec: 'bytes' });
    const h = natsHeaders();
    h.append('x-multi', 'a');
    h.append('x-multi', 'b');
    await jetstream(setup.nc).publish(topic, new Uint8Array([1, 2, 3]), { headers: h });
    await waitFor(
      () => got.length === 1,
      10_000,
      () => 'nothing received',
    );
    expect(got[0]?.headers['x-multi']).toBe('a, b');
    expect([...(got[0]?.body as Uint8Array)]).toEqual([1, 2, 3]);
  });
});
