import 'reflect-metadata';
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Container, inject, injectable } from 'inversify';
import { z } from 'zod';
import { App, BROKER, type Broker, jsonCodec, type Message, Subscribe } from '@ktransport/broker';
import { waitFor } from '@ktransport/broker/testing';
import { KafkaBroker, KafkaServer } from '@ktransport/transport-kafka';
import type { Admin } from 'kafkajs';
import { connectAdmin, createTopic, defined, ensureKafka, ensureKcat, fast, KAFKA, unique } from './helpers.js';

/** Runs kcat (librdkafka, a client nobody here wrote) and returns its stdout. */
function kcat(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('kcat', ['-b', KAFKA, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`kcat ${args.join(' ')} exited with ${code}: ${err}`));
    });
    child.stdin.end(input ?? '');
  });
}

/** A record as `kcat -J` prints it; headers are a flat [name, value, ...] list. */
interface KcatRecord {
  key: string | null;
  payload: string;
  headers?: string[];
}

function headerMap(flat: string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = flat[i];
    const value = flat[i + 1];
    if (name !== undefined && value !== undefined) out[name] = value;
  }
  return out;
}

const REPORTS = unique('reports');
const REPORTS_DLQ = unique('reports-dlq');
const SAVED = unique('saved');
const GROUP = unique('saver');

const Report = z.object({ device: z.string().min(1), celsius: z.number(), tags: z.array(z.string()).default([]) });
type Report = z.infer<typeof Report>;

@injectable()
class ReportSaver {
  readonly saved: Report[] = [];
  readonly keys: (string | undefined)[] = [];

  constructor(@inject(BROKER) private readonly broker: Broker) {}

  @Subscribe(REPORTS, { group: GROUP, schema: Report, deadLetter: REPORTS_DLQ })
  async save(message: Message<Report>): Promise<void> {
    this.saved.push(message.body);
    this.keys.push(message.key);
    await this.broker.publish(SAVED, { device: message.body.device });
  }
}

let admin: Admin;

beforeAll(async () => {
  await ensureKafka();
  await ensureKcat();
  admin = await connectAdmin();
  for (const topic of [REPORTS, REPORTS_DLQ, SAVED]) await createTopic(admin, topic, 1);
}, 150_000);

afterAll(async () => {
  await admin?.disconnect();
});

describe('interop with kcat', () => {
  it('a kcat message reaches a @Subscribe method of a container service, typed and validated; bad ones are dead-lettered with the reason', async () => {
    const broker = new KafkaBroker({ brokers: `kafka://${KAFKA}`, ...fast });
    const container = new Container();
    container.bind(BROKER).toConstantValue(broker);
    container.bind(ReportSaver).toSelf().inSingletonScope();
    const app = new App({ servers: [new KafkaServer({ broker, container, services: [ReportSaver] })], signals: [] });
    await app.start();
    try {
      const send = (value: string, headers: string[] = ['-H', 'content-type=application/json']): Promise<string> =>
        kcat(['-P', '-t', REPORTS, '-k', 'dev-1', ...headers], `${value}\n`);
      await send('{"device":"dev-1","celsius":21.5}');
      await send('{"device":"dev-2","celsius":-3,"tags":["roof"]}', []);
      await send('{"device":"","celsius":"warm"}');
      await send('not json at all');
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
      expect(saver.keys).toEqual(['dev-1', 'dev-1']);
      // The dead letters keep the original bytes and content type; read them with kcat too.
      const dead = (await kcat(['-C', '-J', '-t', REPORTS_DLQ, '-o', 'beginning', '-c', '2', '-e', '-q']))
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as KcatRecord)
        .map((r) => ({ payload: r.payload, headers: headerMap(r.headers) }));
      expect(dead.map((d) => d.headers['x-dead-letter-error-type'])).toEqual(['VALIDATION_ERROR', 'DECODE_ERROR']);
      const [invalid, undecodable] = [defined(dead[0], 'a first dead letter'), defined(dead[1], 'a second dead letter')];
      expect(invalid.headers['x-dead-letter-error']).toMatch(/device/);
      expect(invalid.payload).toBe('{"device":"","celsius":"warm"}');
      expect(undecodable.payload).toBe('not json at all');
      expect(undecodable.headers).toMatchObject({ 'x-dead-letter-topic': REPORTS, 'x-dead-letter-group': GROUP, 'content-type': 'application/json' });
      const saved = JSON.parse(
        await kcat(['-C', '-t', SAVED, '-o', 'beginning', '-c', '2', '-e', '-q', '-f', '%s\\n']).then((out) => `[${out.trim().split('\n').join(',')}]`),
      ) as unknown;
      expect(saved).toEqual([{ device: 'dev-1' }, { device: 'dev-2' }]);
    } finally {
      await app.stop();
    }
  });

  it('KafkaServer built from broker options applies a schema-typed subscription added before start', async () => {
    const topic = await createTopic(admin, unique('server'), 1);
    const server = new KafkaServer({ broker: { brokers: KAFKA, ...fast } });
    const got: Report[] = [];
    server.subscribe(topic, (m) => void got.push(m.body), { group: unique('g'), schema: Report, fromBeginning: true });
    expect(server.name).toBe('kafka');
    await kcat(['-P', '-t', topic], '{"device":"dev-3","celsius":1}\n');
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
    expect(server.broker.state).toBe('disconnected');
  });

  it('kcat reads what KafkaBroker published: the headers, the key and exactly the codec bytes', async () => {
    const topic = await createTopic(admin, unique('to-kcat'), 1);
    const broker = new KafkaBroker({ brokers: KAFKA, ...fast, messageIds: true });
    await broker.connect();
    const body = { text: 'héllo ✓', n: 7, nested: { ok: true } };
    try {
      await broker.publish(topic, body, { key: 'user-1', headers: { 'x-request-id': 'req-9' } });
    } finally {
      await broker.disconnect();
    }
    const record = JSON.parse(await kcat(['-C', '-J', '-t', topic, '-o', 'beginning', '-c', '1', '-e', '-q'])) as KcatRecord;
    expect(record.key).toBe('user-1');
    expect(Buffer.from(record.payload, 'utf8')).toEqual(Buffer.from(jsonCodec.encode(body)));
    const headers = headerMap(record.headers);
    expect(headers).toMatchObject({ 'x-request-id': 'req-9', 'content-type': 'application/json' });
    expect(headers['message-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});
