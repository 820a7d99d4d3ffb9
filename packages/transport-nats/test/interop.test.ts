import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Container, inject, injectable } from 'inversify';
import { z } from 'zod';
import { App, BROKER, type Broker, jsonCodec, type Message, Subscribe } from '@ktransport/broker';
import { waitFor } from '@ktransport/broker/testing';
import { NatsBroker, NatsServer } from '@ktransport/transport-nats';
import { AckPolicy, DeliverPolicy, jetstream } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/nats-core';
import { type Admin, admin, ensureNats, fast, unique } from './helpers.js';

/*
 * Interop with a client nobody here wrote a line of: the official nats.js v3
 * (@nats-io/transport-node + @nats-io/jetstream) used directly, as a foreign
 * service would. (The `nats` CLI is not packaged for Debian here: no natscli.)
 */

const BASE = unique('interop');
const REPORTS = `${BASE}/reports`;
const REPORTS_DLQ = `${BASE}/reports-dlq`;
const SAVED = `${BASE}/saved`;
const GROUP = unique('saver');

const Report = z.object({ device: z.string().min(1), celsius: z.number(), tags: z.array(z.string()).default([]) });
type Report = z.infer<typeof Report>;

@injectable()
class ReportSaver {
  readonly saved: Report[] = [];
  readonly headers: Record<string, string>[] = [];
  readonly topics: string[] = [];

  constructor(@inject(BROKER) private readonly broker: Broker) {}

  @Subscribe(REPORTS, { group: GROUP, schema: Report, deadLetter: REPORTS_DLQ })
  async save(message: Message<Report>): Promise<void> {
    this.saved.push(message.body);
    this.headers.push(message.headers);
    this.topics.push(message.topic);
    await this.broker.publish(SAVED, { device: message.body.device });
  }
}

let setup: Admin;

beforeAll(async () => {
  await ensureNats();
  setup = await admin();
  // One stream for the three topics: subjects <base>.reports, <base>.reports-dlq, <base>.saved.
  await setup.stream(BASE.replaceAll('/', '.'));
}, 30_000);

afterAll(async () => {
  await setup?.close();
});

/** Reads `count` messages of `subject` from the start of its stream with a raw ephemeral consumer. */
async function readRaw(stream: string, subject: string, count: number) {
  const js = jetstream(setup.nc);
  const info = await setup.jsm.consumers.add(stream, { ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, filter_subject: subject });
  const consumer = await js.consumers.get(stream, info.name);
  const out = [];
  const batch = await consumer.fetch({ max_messages: count, expires: 5_000 });
  for await (const m of batch) {
    out.push({ subject: m.subject, data: m.data, headers: Object.fromEntries((m.headers?.keys() ?? []).map((k) => [k, m.headers?.get(k) ?? ''])) });
    m.ack();
  }
  await setup.jsm.consumers.delete(stream, info.name);
  return out;
}

describe('interop with the raw nats.js client', () => {
  it('a raw JetStream message with NATS headers reaches a @Subscribe method of a container service, typed and validated; bad ones are dead-lettered', async () => {
    const broker = new NatsBroker({ ...fast });
    const container = new Container();
    container.bind(BROKER).toConstantValue(broker);
    container.bind(ReportSaver).toSelf().inSingletonScope();
    const app = new App({ servers: [new NatsServer({ broker, container, services: [ReportSaver] })], signals: [] });
    await app.start();
    try {
      const js = jetstream(setup.nc);
      const subject = `${BASE}.reports`;
      const send = async (value: string, contentType?: string): Promise<void> => {
        const h = natsHeaders();
        if (contentType) h.set('content-type', contentType);
        h.set('x-source', 'raw-nats');
        await js.publish(subject, value, { headers: h });
      };
      await send('{"device":"dev-1","celsius":21.5}', 'application/json');
      await send('{"device":"dev-2","celsius":-3,"tags":["roof"]}');
      await send('{"device":"","celsius":"warm"}', 'application/json');
      await send('not json at all', 'application/json');
      const saver = container.get(ReportSaver);
      await waitFor(
        () => saver.saved.length === 2,
        15_000,
        () => `saved ${JSON.stringify(saver.saved)}`,
      );
      expect(saver.saved).toEqual([
        { device: 'dev-1', celsius: 21.5, tags: [] },
        { device: 'dev-2', celsius: -3, tags: ['roof'] },
      ]);
      expect(saver.topics).toEqual([REPORTS, REPORTS]);
      expect(saver.headers.map((h) => h['x-source'])).toEqual(['raw-nats', 'raw-nats']);
      const stream = await setup.jsm.streams.find(subject);
      const dead = await readRaw(stream, `${BASE}.reports-dlq`, 2);
      expect(dead.map((d) => d.headers['x-dead-letter-error-type'])).toEqual(['VALIDATION_ERROR', 'DECODE_ERROR']);
      expect(Buffer.from(dead[0]?.data ?? []).toString()).toBe('{"device":"","celsius":"warm"}');
      expect(Buffer.from(dead[1]?.data ?? []).toString()).toBe('not json at all');
      expect(dead[1]?.headers).toMatchObject({
        'x-dead-letter-topic': REPORTS,
        'x-dead-letter-group': GROUP,
        'content-type': 'application/json',
        'x-source': 'raw-nats',
      });
      const saved = await readRaw(stream, `${BASE}.saved`, 2);
      expect(saved.map((m) => JSON.parse(Buffer.from(m.data).toString()) as unknown)).toEqual([{ device: 'dev-1' }, { device: 'dev-2' }]);
    } finally {
      await app.stop();
    }
  });

  it('NatsServer built from broker options applies a schema-typed subscription added before start', async () => {
    const topic = unique('server');
    await setup.stream(topic);
    const server = new NatsServer({ broker: { ...fast } });
    const got: Report[] = [];
    server.subscribe(topic, (m) => void got.push(m.body), { group: unique('g'), schema: Report, deliverPolicy: 'all' });
    expect(server.name).toBe('nats');
    await jetstream(setup.nc).publish(topic, '{"device":"dev-3","celsius":1}');
    await server.start();
    try {
      await waitFor(
        () => got.length === 1,
        15_000,
        () => 'nothing received',
      );
      expect(got).toEqual([{ device: 'dev-3', celsius: 1, tags: [] }]);
      expect(server.broker.state).toBe('connected');
    } finally {
      await server.stop();
    }
    expect(server.broker.state).toBe('closed');
  });

  it('a raw consumer reads what NatsBroker published: the subject, the headers, the key and exactly the codec bytes', async () => {
    const topic = unique('to-raw');
    const stream = await setup.stream(topic);
    const broker = new NatsBroker({ ...fast, messageIds: true });
    await broker.connect();
    const body = { text: 'héllo ✓', n: 7, nested: { ok: true } };
    try {
      await broker.publish(`${topic}/eu`, body, { key: 'user-1', headers: { 'x-request-id': 'req-9' }, msgId: 'dedupe-1' });
    } finally {
      await broker.disconnect();
    }
    const [record] = await readRaw(stream, `${topic}.eu`, 1);
    expect(record?.subject).toBe(`${topic}.eu`);
    expect(Buffer.from(record?.data ?? [])).toEqual(Buffer.from(jsonCodec.encode(body)));
    expect(record?.headers).toMatchObject({ 'x-request-id': 'req-9', 'content-type': 'application/json', 'message-key': 'user-1', 'Nats-Msg-Id': 'dedupe-1' });
    expect(record?.headers['message-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});
