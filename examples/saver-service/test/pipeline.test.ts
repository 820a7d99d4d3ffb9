import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_HEADER, type Message } from '@ktransport/broker';
import { MqttBroker } from '@ktransport/transport-mqtt';
import { endMqttSession } from '../src/transport.js';
import { eventually, freshDatabase, killSaverMidRun, runDemo, startService } from './support.js';

const MQTT = 'mqtt://127.0.0.1:1883';
const KAFKA = 'kafka://127.0.0.1:9092';

let db: Awaited<ReturnType<typeof freshDatabase>>;
beforeAll(async () => {
  db = await freshDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe('saver-service end to end', () => {
  it('runs on embedded defaults (aedes, PGlite) with nothing else needed', async () => {
    const result = await runDemo(['--count', '200']);
    expect(result.code, result.output).toBe(0);
    expect(result.summary).toMatch(/^demo: posted=200 stored=200 duplicates=\d+ lost=0 transport=mqtt\(embedded\) db=pglite\(embedded\)$/);
  });

  it('stores every report posted over gRPC exactly once, over Mosquitto and PostgreSQL', async () => {
    const before = await db.count();
    const result = await runDemo(['--count', '400', '--broker', MQTT, '--database', db.url]);
    expect(result.code, result.output).toBe(0);
    expect(result.summary).toMatch(/^demo: posted=400 stored=400 duplicates=\d+ lost=0 transport=mqtt db=postgres$/);
    expect(await db.count()).toBe(before + 400);
  });

  it('stores every report posted over gRPC exactly once, over Kafka and PostgreSQL', async () => {
    const before = await db.count();
    const result = await runDemo(['--count', '400', '--broker', KAFKA, '--database', db.url]);
    expect(result.code, result.output).toBe(0);
    expect(result.summary).toMatch(/^demo: posted=400 stored=400 duplicates=\d+ lost=0 transport=kafka db=postgres$/);
    expect(await db.count()).toBe(before + 400);
  });

  for (const broker of [MQTT, KAFKA]) {
    it(`loses no report when the saver is killed with SIGKILL mid-run and restarted (${broker})`, async () => {
      const instance = await killSaverMidRun(broker, db);
      if (broker === MQTT) await endMqttSession(MQTT, `${instance}-saver`);
    }, 180_000);
  }

  it('dead-letters a report that violates the schema, with its reason, and keeps storing the rest', async () => {
    const instance = `dlq-${randomUUID().slice(0, 6)}`;
    const saver = await startService('saver', { KT_BROKER_URL: MQTT, KT_DATABASE_URL: db.url, KT_INSTANCE: instance, KT_GROUP: instance });
    const device = new MqttBroker({ url: MQTT, tracing: false, metrics: false });
    await device.connect();
    try {
      const dead: Message<Uint8Array>[] = [];
      const bad = { reportId: `bad-${instance}`, eventName: '', content: 7 };
      // Only this test's report counts: other savers on the shared broker may dead-letter their own.
      const mine = (m: Message<Uint8Array>): boolean => new TextDecoder().decode(m.body).includes(bad.reportId);
      await device.subscribe<Uint8Array>('report/dead', (m) => void (mine(m) && dead.push(m)), { codec: 'bytes' });
      const before = await db.count('report_events');
      await device.publish('report/event', bad);
      await device.publish('report/event', { reportId: `good-${instance}`, eventName: 'boot', content: 'after the bad one' });
      await eventually(() => Promise.resolve(dead.length >= 1), true);
      await eventually(async () => (await db.count('report_events')) - before, 1);
      const [violation] = dead;
      expect(violation?.headers[DEAD_LETTER_HEADER.originalTopic]).toBe('report/event');
      expect(violation?.headers[DEAD_LETTER_HEADER.errorType]).toBe('VALIDATION_ERROR');
      expect(violation?.headers[DEAD_LETTER_HEADER.error]).toMatch(/eventName: .*; content: /);
      expect(JSON.parse(new TextDecoder().decode(violation?.body))).toEqual(bad);
    } finally {
      await device.disconnect();
      await saver.stop();
      await endMqttSession(MQTT, instance);
    }
  }, 60_000);
});
