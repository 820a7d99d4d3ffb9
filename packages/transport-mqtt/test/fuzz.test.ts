import { randomUUID } from 'node:crypto';
import { type ConnectionState, DEAD_LETTER_HEADER, type Message, msgpackCodec } from '@ktransport/broker';
import { fuzz, fuzzSeed } from '@ktransport/broker/testing';
import { invalidTextIndex } from '@ktransport/broker/transport';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Mosquitto } from './mosquitto.js';
import { open, sleep, topic, waitFor } from './helpers.js';

/**
 * Hostile input from a foreign client: 10,000 messages no subscriber can
 * accept (random bytes, control characters, invalid UTF-8, garbage under each
 * content type, unknown and random content types, strings up to MQTT's 65,535
 * bytes, user properties that join to more than that) interleaved with 10,000
 * good ones, published by a plain mqtt.js client to a subscription with a
 * schema and a dead-letter topic. Every good message is handled, every bad one
 * is dead-lettered once with a bounded, wire-safe reason, and the connection
 * never drops. A private Mosquitto at its stock configuration; loopback only.
 * The generator is seeded: a failure names the seed that reproduces it.
 */

const COUNT = 10_000;
const SEED = fuzzSeed();

const { int, pick, bytes, text } = fuzz(SEED);

/**
 * One to three random user properties, valid on the wire. (Never an empty set:
 * mqtt.js 5.16 does not send a publish whose `userProperties` is `{}`, and its
 * callback never runs.)
 */
function randomProperties(): Record<string, string> {
  const properties: Record<string, string> = {};
  for (let i = 1 + int(3); i > 0; i--) properties[`r-${text(1 + int(12))}`] = text(int(40));
  return properties;
}

interface Outgoing {
  readonly payload: Buffer;
  readonly properties: mqtt.IClientPublishOptions['properties'];
}

const CONTROL = Buffer.from(Array.from({ length: 32 }, (_, i) => i).concat([0x7f]));
const INVALID_UTF8 = [
  Buffer.from([0xff]),
  Buffer.from([0xc3, 0x28]),
  Buffer.from([0xe2, 0x28, 0xa1]),
  Buffer.from([0xed, 0xa0, 0x80]),
  Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80]),
];

/** Bad message `i`: a payload and properties that fail decoding or the schema. Every one is told apart by `fuzz-id`, or by its body where its headers cannot travel again. */
function bad(i: number): Outgoing {
  const id = { 'fuzz-id': String(i) };
  const user = (extra: Record<string, string | string[]> = {}): Record<string, string | string[]> => ({ ...randomProperties(), ...id, ...extra });
  switch (i % 12) {
    case 0:
      return { payload: bytes(1 + int(64)), properties: { contentType: 'application/json', userProperties: user() } };
    case 1:
      return { payload: bytes(1 + int(64)), properties: { userProperties: user() } }; // the default codec (json)
    case 2:
      return { payload: Buffer.concat([CONTROL.subarray(int(16)), bytes(int(8))]), properties: { contentType: 'text/plain', userProperties: user() } };
    case 3:
      return {
        payload: Buffer.concat([Buffer.from('{"kind":"good","n":'), pick(INVALID_UTF8), Buffer.from('}')]),
        properties: { contentType: int(2) ? 'text/plain' : 'application/json', userProperties: user() },
      };
    case 4:
      return { payload: bytes(1 + int(64)), properties: { contentType: 'application/msgpack', userProperties: user() } };
    case 5: {
      // Valid JSON of the wrong shape, up to hundreds of validation issues.
      const shapes = [
        { kind: 'bad', n: i },
        [1, 2, 3],
        'text',
        null,
        { kind: 'good', n: 'x'.repeat(int(100)) },
        { kind: 'good', n: i + 0.5 },
        Array.from({ length: int(500) }, () => ({ kind: 7 })),
      ];
      return { payload: Buffer.from(JSON.stringify(shapes[int(shapes.length)])), properties: { contentType: 'application/json', userProperties: user() } };
    }
    case 6:
      return { payload: Buffer.from(JSON.stringify({ kind: 'good', n: i })), properties: { contentType: text(1 + int(60)), userProperties: user() } }; // no such codec
    case 7:
      return { payload: Buffer.from(text(int(200))), properties: { contentType: 'text/plain', userProperties: user() } }; // a string, not an object
    case 8:
      return { payload: Buffer.from(JSON.stringify({ kind: 'good', n: i })), properties: { contentType: 'application/msgpack', userProperties: user() } }; // JSON under msgpack
    case 9:
      // Long strings, within what Mosquitto accepts: a content type or a user property of up to 65,535 bytes.
      if (i % 120 === 9) return { payload: bytes(8), properties: { contentType: `application/${'x'.repeat(65_523)}`, userProperties: user() } };
      if (i % 120 === 21) return { payload: bytes(8), properties: { contentType: 'application/json', userProperties: user({ long: 'v'.repeat(65_535) }) } };
      return { payload: bytes(int(3)), properties: { contentType: 'application/json', userProperties: user() } };
    case 10:
      // A repeated name that joins to more than 65,535 bytes: the dead letter goes without the original headers.
      if (i % 120 === 10)
        return {
          payload: Buffer.from(`joined-${i}`),
          properties: { contentType: 'application/json', userProperties: { ...id, twice: ['w'.repeat(40_000), 'w'.repeat(40_000)] } },
        };
      return { payload: Buffer.concat([bytes(int(16)), CONTROL.subarray(0, 4)]), properties: { userProperties: user() } };
    default:
      return { payload: Buffer.from(text(1 + int(100))), properties: { contentType: 'application/json', userProperties: user() } };
  }
}

/** Good message `n`: JSON, msgpack or no content type, sometimes with random valid user properties. */
function good(n: number): Outgoing {
  const body = { kind: 'good', n };
  const userProperties = int(2) ? randomProperties() : undefined;
  const variant = n % 3;
  if (variant === 0)
    return { payload: Buffer.from(JSON.stringify(body)), properties: { contentType: 'application/json', ...(userProperties ? { userProperties } : {}) } };
  if (variant === 1)
    return {
      payload: Buffer.from(msgpackCodec.encode(body)),
      properties: { contentType: 'application/msgpack', ...(userProperties ? { userProperties } : {}) },
    };
  return { payload: Buffer.from(JSON.stringify(body)), properties: userProperties ? { userProperties } : {} };
}

describe(`fuzz: foreign payloads and headers (seed ${SEED})`, () => {
  let mosquitto: Mosquitto;
  let device: mqtt.MqttClient | undefined;
  beforeAll(async () => {
    mosquitto = await Mosquitto.start({ persistence: false, stock: true });
  });
  afterAll(async () => {
    await device?.endAsync();
    await mosquitto?.destroy();
  });

  it(`handles ${COUNT} good messages and dead-letters ${COUNT} bad ones with bounded reasons, without a reconnect`, async () => {
    const broker = await open({ url: mosquitto.url });
    const states: ConnectionState[] = [broker.state];
    broker.onStateChange((s) => void states.push(s));
    const [t, dlq] = [topic('fuzz'), topic('fuzz-dlq')];
    const handled = new Set<number>();
    let handledTwice = 0;
    const dead = new Map<number, number>();
    const unbounded: string[] = [];
    const unidentified: string[] = [];
    await broker.subscribe<Uint8Array>(
      dlq,
      (m: Message<Uint8Array>) => {
        const reason = m.headers[DEAD_LETTER_HEADER.error] ?? '';
        if (reason === '' || Buffer.byteLength(reason) > 1_024 || invalidTextIndex(reason) !== -1) unbounded.push(reason.slice(0, 200));
        const joined = /^joined-(\d+)$/.exec(Buffer.from(m.body).toString('latin1'));
        const id = Number(m.headers['fuzz-id'] ?? joined?.[1] ?? Number.NaN);
        if (Number.isNaN(id)) unidentified.push(JSON.stringify(m.headers).slice(0, 200));
        else dead.set(id, (dead.get(id) ?? 0) + 1);
      },
      { codec: 'bytes', concurrency: 16 },
    );
    await broker.subscribe(
      t,
      (m) => {
        if (handled.has(m.body.n)) handledTwice++;
        handled.add(m.body.n);
      },
      { schema: z.object({ kind: z.literal('good'), n: z.number().int() }), deadLetter: dlq, concurrency: 16 },
    );

    device = await mqtt.connectAsync(mosquitto.url, { protocolVersion: 5, clientId: `fuzz-device-${randomUUID().slice(0, 8)}`, reconnectPeriod: 0 });
    let deviceClosed = false;
    device.on('close', () => (deviceClosed = true));
    const started = Date.now();
    // At most 20 unacknowledged at once: a stock Mosquitto's Receive Maximum for its clients.
    const window = new Set<Promise<unknown>>();
    let acknowledged = Date.now();
    for (let i = 0; i < COUNT; i++) {
      for (const message of [good(i), bad(i)]) {
        const sent: Promise<unknown> = device.publishAsync(t, message.payload, { qos: 1, properties: message.properties }).finally(() => {
          window.delete(sent);
          acknowledged = Date.now();
        });
        window.add(sent);
        while (window.size >= 20) {
          if (Date.now() - acknowledged > 10_000)
            throw new Error(`seed ${SEED}: the foreign client's publishes are not acknowledged any more (message ${i}, connected ${device.connected})`);
          await Promise.race([...window, sleep(1_000)]);
        }
      }
    }
    await Promise.all(window);
    expect(deviceClosed).toBe(false);

    const missing = (): string =>
      Array.from({ length: COUNT }, (_, i) => i)
        .filter((i) => !dead.has(i))
        .slice(0, 10)
        .map((i) => `${i} (case ${i % 12}, ${i % 120})`)
        .join(', ');
    await waitFor(
      () => handled.size === COUNT && dead.size + unidentified.length >= COUNT,
      60_000,
      () => `seed ${SEED}: handled ${handled.size}, dead-lettered ${dead.size} of ${COUNT}, states ${states.join(',')}; not dead-lettered: ${missing()}`,
    );
    expect(unbounded, `seed ${SEED}: reasons that are empty, too long or not wire-safe`).toEqual([]);
    expect(unidentified, `seed ${SEED}: dead letters without their id`).toEqual([]);
    expect(
      [...dead.values()].filter((n) => n !== 1),
      `seed ${SEED}: bad messages dead-lettered more than once`,
    ).toEqual([]);
    expect(handledTwice).toBe(0);
    expect(states, `seed ${SEED}`).toEqual(['connected']);
    expect(Date.now() - started).toBeLessThan(90_000);
  }, 120_000);
});
