import { randomUUID } from 'node:crypto';
import { type ConnectionState, DEAD_LETTER_HEADER, type Message, PublishError } from '@ktransport/broker';
import { invalidTextIndex } from '@ktransport/broker/transport';
import { InvalidHeaderError, InvalidTopicError, type MqttBroker, type MqttPublishOptions } from '@ktransport/transport-mqtt';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ensureMosquitto, SHARED_URL } from './mosquitto.js';
import { type TcpProxy, tcpProxy } from './network.js';
import { defined, open, sleep, states, topic, waitFor, within } from './helpers.js';

/**
 * Headers and topics MQTT cannot carry. Mosquitto closes the connection of a
 * client whose PUBLISH has a string that is not valid MQTT UTF-8, and mqtt.js
 * sends the stored QoS 1 packet again on every reconnect: one bad header used to
 * loop the connection forever, and one over 65,535 bytes wedged it and crashed
 * the process at the next reconnect. Foreign clients can send strings that are
 * valid on the wire but that ktransport must not turn into invalid ones.
 */

const proxies: TcpProxy[] = [];
const foreign: mqtt.MqttClient[] = [];
beforeAll(ensureMosquitto);
afterAll(async () => {
  await Promise.all(foreign.map((c) => c.endAsync()));
  await Promise.all(proxies.map((p) => p.close()));
});

/** A plain mqtt.js client: a device that sends whatever it likes. */
async function device(url = SHARED_URL): Promise<mqtt.MqttClient> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: `device-${randomUUID().slice(0, 8)}`, reconnectPeriod: 0 });
  foreign.push(client);
  return client;
}

/** Publishes `count` good messages and waits until the handler got them all. */
async function flows(broker: MqttBroker, t: string, got: number[], count: number): Promise<void> {
  const before = got.length;
  for (let n = 0; n < count; n++) await broker.publish(t, { n });
  await waitFor(
    () => got.length === before + count,
    5_000,
    () => `${got.length - before} of ${count} good messages handled`,
  );
}

describe("a caller's header MQTT cannot carry", () => {
  const bad: [string, MqttPublishOptions, string][] = [
    ['a control character in a value', { headers: { note: 'a\nb' } }, 'note'],
    ['a control character in a name', { headers: { 'x\u0001y': 'v' } }, 'x\\u0001y'],
    ['a C1 control character', { headers: { c1: 'a\u0085b' } }, 'c1'],
    ['an unpaired surrogate', { headers: { s: 'a\ud800b' } }, 's'],
    ['a noncharacter', { headers: { n: 'a\uffffb' } }, 'n'],
    ['a value over 65,535 bytes', { headers: { big: 'x'.repeat(70_000) } }, 'big'],
    ['a value of 65,536 UTF-8 bytes', { headers: { u: 'ü'.repeat(32_768) } }, 'u'],
    ['a name over 65,535 bytes', { headers: { ['n'.repeat(65_536)]: 'v' } }, 'nnn'],
    ['a control character in the content type', { codec: 'bytes', headers: { 'content-type': 'text/plain\u0007' } }, 'content-type'],
    ['a content type over 65,535 bytes', { codec: 'bytes', headers: { 'content-type': `a/${'b'.repeat(65_534)}` } }, 'content-type'],
    ['a control character in the key', { key: 'k\u0000' }, 'message-key'],
  ];

  it('is refused with a non-retriable InvalidHeaderError before anything is sent; the connection stays up and later publishes flow', async () => {
    const broker = await open({ reconnectPeriodMs: 100 });
    const seen = states(broker);
    const t = topic('bad-header');
    const got: number[] = [];
    await broker.subscribe<{ n: number }>(t, (m) => void got.push(m.body.n));
    for (const [what, options, named] of bad) {
      const body = options.codec === 'bytes' ? new Uint8Array([1]) : {};
      for (const qos of [0, 1, 2] as const) {
        const error = await within(broker.publish(t, body, { ...options, qos }), 2_000);
        expect(error, `${what}, QoS ${qos}`).toBeInstanceOf(InvalidHeaderError);
        expect(error).toBeInstanceOf(PublishError);
        expect((error as InvalidHeaderError).retriable).toBe(false);
        expect((error as Error).message.length).toBeLessThan(1_000);
        expect(invalidTextIndex((error as Error).message)).toBe(-1);
        expect((error as InvalidHeaderError).header.startsWith(named)).toBe(true);
      }
      await flows(broker, t, got, 2);
    }
    await flows(broker, t, got, 20);
    await sleep(300);
    expect(seen).toEqual(['connected']);
  });

  it('is refused in a topic too (control character, over 65,535 bytes)', async () => {
    const broker = await open({ reconnectPeriodMs: 100 });
    const seen = states(broker);
    for (const t of [`${topic('bad-topic')}/a\u0001b`, `${topic('bad-topic')}/\ud800`, `${topic('long-topic')}/${'x'.repeat(65_536)}`]) {
      const error = await within(broker.publish(t, { n: 1 }), 2_000);
      expect(error).toBeInstanceOf(InvalidTopicError);
      expect(error).toBeInstanceOf(PublishError);
      expect((error as PublishError).retriable).toBe(false);
      expect(invalidTextIndex((error as Error).message)).toBe(-1);
      expect((error as Error).message.length).toBeLessThan(1_000);
    }
    const t = topic('after-bad-topic');
    const got: number[] = [];
    await broker.subscribe<{ n: number }>(t, (m) => void got.push(m.body.n));
    await flows(broker, t, got, 5);
    expect(seen).toEqual(['connected']);
  });

  it('over 65,535 bytes leaves nothing half-written: the connection survives the next reconnect and the process stays up', async () => {
    const proxy = await tcpProxy(1883);
    proxies.push(proxy);
    const broker = await open({ url: `mqtt://127.0.0.1:${proxy.port}`, reconnectPeriodMs: 100 });
    const t = topic('big-header');
    const got: number[] = [];
    await broker.subscribe<{ n: number }>(t, (m) => void got.push(m.body.n));
    expect(await within(broker.publish(t, {}, { headers: { big: 'x'.repeat(70_000) } }), 2_000)).toBeInstanceOf(InvalidHeaderError);
    await flows(broker, t, got, 3);
    proxy.cut();
    await waitFor(
      () => broker.state === 'reconnecting',
      2_000,
      () => broker.state,
    );
    await waitFor(
      () => broker.state === 'connected',
      5_000,
      () => broker.state,
    );
    await flows(broker, t, got, 3);
  });
});

describe('what a foreign client sends', () => {
  /** A subscriber with a JSON schema and a dead-letter topic, watched for reconnects. */
  async function guarded(name: string): Promise<{ t: string; broker: MqttBroker; seen: ConnectionState[]; good: number[]; dead: Message<Uint8Array>[] }> {
    const broker = await open({ reconnectPeriodMs: 100 });
    const seen = states(broker);
    const [t, dlq] = [topic(name), topic(`${name}-dlq`)];
    const good: number[] = [];
    const dead: Message<Uint8Array>[] = [];
    await broker.subscribe<Uint8Array>(dlq, (m) => void dead.push(m), { codec: 'bytes' });
    await broker.subscribe(t, (m) => void good.push(m.body.n), { schema: z.object({ n: z.number() }), deadLetter: dlq });
    return { t, broker, seen, good, dead };
  }

  function expectBoundedReason(letter: Message<Uint8Array> | undefined): void {
    const reason = letter?.headers[DEAD_LETTER_HEADER.error] ?? '';
    expect(reason.length).toBeGreaterThan(0);
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(1_024);
    expect(invalidTextIndex(reason)).toBe(-1);
  }

  it('the single byte 0x01 as JSON is dead-lettered once; the next 20 valid messages are handled, no reconnect', async () => {
    const { t, seen, good, dead } = await guarded('byte-01');
    const client = await device();
    await client.publishAsync(t, Buffer.from([0x01]), { qos: 1, properties: { contentType: 'application/json' } });
    for (let n = 0; n < 20; n++) await client.publishAsync(t, JSON.stringify({ n }), { qos: 1, properties: { contentType: 'application/json' } });
    await waitFor(
      () => good.length === 20 && dead.length === 1,
      10_000,
      () => `good ${good.length} dead ${dead.length} states ${seen.join(',')}`,
    );
    await sleep(300);
    expect(dead).toHaveLength(1);
    expect(Buffer.from(defined(dead[0], 'a dead letter').body)).toEqual(Buffer.from([0x01]));
    expect(dead[0]?.headers[DEAD_LETTER_HEADER.errorType]).toBe('DECODE_ERROR');
    expectBoundedReason(dead[0]);
    expect(seen).toEqual(['connected']);
  });

  it('a content type of 65,500 bytes is dead-lettered with bounded reason headers; later messages flow', async () => {
    const { t, seen, good, dead } = await guarded('long-content-type');
    const client = await device();
    const contentType = `application/${'x'.repeat(65_488)}`;
    await client.publishAsync(t, '{"n":1}', { qos: 1, properties: { contentType } });
    for (let n = 0; n < 5; n++) await client.publishAsync(t, JSON.stringify({ n }), { qos: 1 });
    await waitFor(
      () => good.length === 5 && dead.length === 1,
      10_000,
      () => `good ${good.length} dead ${dead.length} states ${seen.join(',')}`,
    );
    expect(dead[0]?.headers['content-type']).toBe(contentType); // the original header is kept
    expectBoundedReason(dead[0]);
    expect(seen).toEqual(['connected']);
  });

  it('a body with 20,000 validation issues is dead-lettered with a bounded reason; later messages flow', async () => {
    const broker = await open({ reconnectPeriodMs: 100 });
    const seen = states(broker);
    const [t, dlq] = [topic('many-issues'), topic('many-issues-dlq')];
    const good: number[] = [];
    const dead: Message<Uint8Array>[] = [];
    await broker.subscribe<Uint8Array>(dlq, (m) => void dead.push(m), { codec: 'bytes' });
    await broker.subscribe(t, (m) => void good.push(m.body.items.length), { schema: z.object({ items: z.array(z.number()) }), deadLetter: dlq });
    const client = await device();
    await client.publishAsync(t, JSON.stringify({ items: Array.from({ length: 20_000 }, () => 'x') }), { qos: 1 });
    for (let n = 1; n <= 5; n++) await client.publishAsync(t, JSON.stringify({ items: [n] }), { qos: 1 });
    await waitFor(
      () => good.length === 5 && dead.length === 1,
      10_000,
      () => `good ${good.length} dead ${dead.length} states ${seen.join(',')}`,
    );
    expect(dead[0]?.headers[DEAD_LETTER_HEADER.errorType]).toBe('VALIDATION_ERROR');
    expectBoundedReason(dead[0]);
    expect(seen).toEqual(['connected']);
  });

  it('user properties whose joined values exceed 65,535 bytes are dead-lettered with the reason headers alone', async () => {
    const { t, seen, good, dead } = await guarded('joined');
    const client = await device();
    // A repeated name is one header on receive ("a, b"): 2 x 40,000 bytes cannot travel as one user property.
    const half = 'v'.repeat(40_000);
    await client.publishAsync(t, '"not an object"', { qos: 1, properties: { userProperties: { twice: [half, half] } } });
    for (let n = 0; n < 5; n++) await client.publishAsync(t, JSON.stringify({ n }), { qos: 1 });
    await waitFor(
      () => good.length === 5 && dead.length === 1,
      10_000,
      () => `good ${good.length} dead ${dead.length} states ${seen.join(',')}`,
    );
    expect(dead[0]?.headers[DEAD_LETTER_HEADER.headersDropped]).toBe('true');
    expect(dead[0]?.headers.twice).toBeUndefined();
    expectBoundedReason(dead[0]);
    expect(seen).toEqual(['connected']);
  });
});
