import { type ConnectionState, DEAD_LETTER_HEADER, type Message, msgpackCodec } from '@ktransport/broker';
import { type CodePointRange, fuzz, fuzzSeed, PRINTABLE_RANGES } from '@ktransport/broker/testing';
import { invalidTextIndex } from '@ktransport/broker/transport';
import amqplib, { type Options } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { open, SHARED_URL, sleep, unique, waitFor } from './helpers.js';

/**
 * Hostile input from a foreign client: 10,000 messages no subscriber can
 * accept (random bytes, control characters, invalid UTF-8, garbage under each
 * content type, unknown and random content types, headers tables with numbers,
 * booleans, nested tables, arrays, byte arrays, void and timestamps, header
 * names with control characters and of 255 bytes) interleaved with 10,000 good
 * ones (with odd headers too), published by a plain amqplib client to a
 * subscription with a schema and a dead-letter topic. Every good message is
 * handled once, every bad one is dead-lettered once with a bounded, wire-safe
 * reason, and the connection never drops. The generator is seeded: a failure
 * names the seed that reproduces it.
 */

const COUNT = 10_000;
const SEED = fuzzSeed();

const { random, int, pick, bytes, text: fuzzText } = fuzz(SEED);
/** Code point ranges for random text: controls, then what every wire accepts. */
const RANGES: readonly CodePointRange[] = [[0x00, 0x1f], ...PRINTABLE_RANGES];
const text = (length: number): string => fuzzText(length, RANGES);

/** A random value of any type an AMQP table can carry, as amqplib encodes them. */
function oddValue(): unknown {
  switch (int(10)) {
    case 0:
      return int(2 ** 31) - 2 ** 30;
    case 1:
      return random() * 1e6;
    case 2:
      return int(2) === 1;
    case 3:
      return { nested: text(int(8)), n: int(100) };
    case 4:
      return [int(10), text(int(5))];
    case 5:
      return bytes(int(16));
    case 6:
      return null;
    case 7:
      return { '!': 'timestamp', value: int(2 ** 31) };
    case 8:
      return text(int(300));
    default:
      return 'x'.repeat(int(4_000));
  }
}

/** One to three random headers of odd types and names (at most 255 bytes, as the table's short strings hold). */
function oddHeaders(): Record<string, unknown> {
  const headers: Record<string, unknown> = {};
  for (let i = 1 + int(3); i > 0; i--) {
    const name = int(20) === 0 ? 'n'.repeat(255) : `r-${text(1 + int(12))}`;
    headers[Buffer.byteLength(name) > 255 ? 'r-long' : name] = oddValue();
  }
  return headers;
}

interface Outgoing {
  readonly content: Buffer;
  readonly options: Options.Publish;
}

const CONTROL = Buffer.from(Array.from({ length: 32 }, (_, i) => i).concat([0x7f]));
const INVALID_UTF8 = [Buffer.from([0xff]), Buffer.from([0xc3, 0x28]), Buffer.from([0xe2, 0x28, 0xa1]), Buffer.from([0xed, 0xa0, 0x80])];

/** A content type AMQP carries (a short string): random text cut to 255 bytes. */
function randomContentType(): string {
  let value = text(1 + int(60));
  while (Buffer.byteLength(value) > 255) value = value.slice(0, -1);
  return value;
}

/** Bad message `i`: a payload and properties that fail decoding or the schema; told apart by its `fuzz-id` header. */
function bad(i: number): Outgoing {
  const headers = { ...oddHeaders(), 'fuzz-id': String(i) };
  const json = (content: Buffer, contentType?: string): Outgoing => ({ content, options: { headers, ...(contentType ? { contentType } : {}) } });
  switch (i % 10) {
    case 0:
      return json(bytes(1 + int(64)), 'application/json');
    case 1:
      return json(bytes(1 + int(64))); // the default codec (json)
    case 2:
      return json(Buffer.concat([CONTROL.subarray(int(16)), bytes(int(8))]), 'text/plain');
    case 3:
      return json(Buffer.concat([Buffer.from('{"kind":"good","n":'), pick(INVALID_UTF8), Buffer.from('}')]), int(2) ? 'text/plain' : 'application/json');
    case 4:
      return json(bytes(1 + int(64)), 'application/msgpack');
    case 5: {
      const shapes = [{ kind: 'bad', n: i }, [1, 2, 3], 'text', null, { kind: 'good', n: 'x'.repeat(int(100)) }, { kind: 'good', n: i + 0.5 }];
      return json(Buffer.from(JSON.stringify(shapes[int(shapes.length)])), 'application/json');
    }
    case 6:
      return json(Buffer.from(JSON.stringify({ kind: 'good', n: i })), randomContentType()); // no such codec
    case 7:
      return json(Buffer.from(JSON.stringify(text(int(200)))), 'application/json'); // a string, not an object
    case 8:
      return json(Buffer.from(JSON.stringify({ kind: 'good', n: i })), 'application/msgpack'); // JSON under msgpack
    default:
      // An empty body, a message id property of random text, and a key header that is a number.
      return {
        content: Buffer.alloc(0),
        options: { headers: { ...headers, 'message-key': int(1000) }, contentType: 'application/json', messageId: randomContentType() },
      };
  }
}

/** Good message `n`: JSON, msgpack or no content type, sometimes with odd headers. */
function good(n: number): Outgoing {
  const body = { kind: 'good', n };
  const headers = int(2) ? oddHeaders() : undefined;
  const variant = n % 3;
  if (variant === 0) return { content: Buffer.from(JSON.stringify(body)), options: { contentType: 'application/json', ...(headers ? { headers } : {}) } };
  if (variant === 1)
    return { content: Buffer.from(msgpackCodec.encode(body)), options: { contentType: 'application/msgpack', ...(headers ? { headers } : {}) } };
  return { content: Buffer.from(JSON.stringify(body)), options: headers ? { headers } : {} };
}

describe(`fuzz: foreign payloads and headers (seed ${SEED})`, () => {
  it(`handles ${COUNT} good messages and dead-letters ${COUNT} bad ones with bounded reasons, without a reconnect`, async () => {
    const broker = await open({ prefetch: 200 });
    const states: ConnectionState[] = [broker.state];
    broker.onStateChange((s) => void states.push(s));
    const [t, dlq] = [unique('fuzz'), unique('fuzz-dlq')];
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
        const id = Number(m.headers['fuzz-id'] ?? Number.NaN);
        if (Number.isNaN(id)) unidentified.push(JSON.stringify(m.headers).slice(0, 200));
        else dead.set(id, (dead.get(id) ?? 0) + 1);
      },
      { codec: 'bytes', concurrency: 16, prefetch: 200 },
    );
    await broker.subscribe(
      t,
      (m) => {
        if (handled.has(m.body.n)) handledTwice++;
        handled.add(m.body.n);
      },
      { schema: z.object({ kind: z.literal('good'), n: z.number().int() }), deadLetter: dlq, concurrency: 16, prefetch: 200 },
    );

    const device = await amqplib.connect(SHARED_URL);
    let deviceClosed = false;
    device.on('close', () => (deviceClosed = true));
    try {
      const channel = await device.createConfirmChannel();
      const started = Date.now();
      for (let i = 0; i < COUNT; i++) {
        for (const message of [good(i), bad(i)]) channel.publish('ktransport', t, message.content, message.options);
        // A bounded window of unconfirmed publishes.
        if (i % 250 === 249) await channel.waitForConfirms();
      }
      await channel.waitForConfirms();
      expect(deviceClosed).toBe(false);

      const missing = (): string =>
        Array.from({ length: COUNT }, (_, i) => i)
          .filter((i) => !dead.has(i))
          .slice(0, 10)
          .map((i) => `${i} (case ${i % 10})`)
          .join(', ');
      await waitFor(
        () => handled.size === COUNT && dead.size + unidentified.length >= COUNT,
        60_000,
        () => `seed ${SEED}: handled ${handled.size}, dead-lettered ${dead.size} of ${COUNT}, states ${states.join(',')}; not dead-lettered: ${missing()}`,
      );
      await sleep(200);
      expect(unbounded, `seed ${SEED}: reasons that are empty, too long or not wire-safe`).toEqual([]);
      expect(unidentified, `seed ${SEED}: dead letters without their id`).toEqual([]);
      expect(
        [...dead.values()].filter((n) => n !== 1),
        `seed ${SEED}: bad messages dead-lettered more than once`,
      ).toEqual([]);
      expect(handledTwice).toBe(0);
      expect(states, `seed ${SEED}`).toEqual(['connected']);
      expect(Date.now() - started).toBeLessThan(90_000);
    } finally {
      await device.close().catch(() => undefined);
    }
  }, 120_000);
});
