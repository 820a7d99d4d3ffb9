import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConnectionState, DEAD_LETTER_HEADER, type Message, msgpackCodec } from '@ktransport/broker';
import { type CodePointRange, fuzz, fuzzSeed, waitFor } from '@ktransport/broker/testing';
import { invalidTextIndex } from '@ktransport/broker/transport';
import { NatsBroker } from '@ktransport/transport-nats';
import { jetstream } from '@nats-io/jetstream';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/nats-core';
import { z } from 'zod';
import { type Admin, admin, ensureNats, fast, unique } from './helpers.js';

/**
 * Hostile input from a foreign client: 10,000 messages no subscriber can
 * accept (random bytes, control characters, invalid UTF-8, garbage under each
 * content type, unknown and random content types, odd but legal NATS header
 * values: tabs, non-ASCII text, 20 KB values, repeated names) interleaved with
 * 5,000 good ones, published by a plain nats.js JetStream client to a
 * subscription with a schema and a dead-letter topic, on the machine's server
 * at its stock configuration. Every good message is handled once, every bad
 * one is dead-lettered once with a bounded, wire-safe reason, and the
 * connection never drops. The generator is seeded: a failure names the seed.
 */

const COUNT = 10_000;
/** Good messages among them. */
const GOOD = COUNT / 2;
const SEED = fuzzSeed();

const { int, bytes, text: fuzzText } = fuzz(SEED);
/** Printable text without Greek (ASCII, Latin, CJK, astral emoji). */
const RANGES: readonly CodePointRange[] = [
  [0x20, 0x7e],
  [0xa0, 0x2ff],
  [0x4e00, 0x9fff],
  [0x1f600, 0x1f64f],
];
const text = (length: number): string => fuzzText(length, RANGES);
/** A NATS header name: printable ASCII without ':' (a token). */
function token(length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) {
    const c = 0x21 + int(0x7e - 0x21 + 1);
    out += c === 0x3a ? 'x' : String.fromCharCode(c);
  }
  return out;
}

interface Outgoing {
  readonly payload: Uint8Array;
  readonly headers: MsgHdrs;
}

const INVALID_UTF8 = [Buffer.from([0xff]), Buffer.from([0xc3, 0x28]), Buffer.from([0xed, 0xa0, 0x80])];

function headersOf(i: number, contentType: string | undefined, extra: [string, string][] = []): MsgHdrs {
  const h = natsHeaders();
  h.set('fuzz-id', String(i));
  if (contentType !== undefined) h.set('content-type', contentType);
  for (let n = int(3); n > 0; n--) h.set(`r-${token(1 + int(10))}`, text(int(30)));
  for (const [name, value] of extra) h.append(name, value);
  return h;
}

/** Bad message `i`: fails decoding or the schema. Told apart by `fuzz-id`, or by its body where its headers cannot travel again. */
function bad(i: number): Outgoing {
  switch (i % 10) {
    case 0:
      return { payload: bytes(1 + int(64)), headers: headersOf(i, 'application/json') };
    case 1:
      return { payload: bytes(1 + int(64)), headers: headersOf(i, undefined) };
    case 2:
      return {
        payload: Buffer.concat([Buffer.from('{"kind":"good","n":'), INVALID_UTF8[int(3)] ?? Buffer.from([0xff]), Buffer.from('}')]),
        headers: headersOf(i, 'text/plain'),
      };
    case 3:
      return { payload: bytes(1 + int(64)), headers: headersOf(i, 'application/msgpack') };
    case 4: {
      const shapes = [{ kind: 'bad', n: i }, [1, 2, 3], 'text', null, { kind: 'good', n: i + 0.5 }, Array.from({ length: int(500) }, () => ({ kind: 7 }))];
      return { payload: Buffer.from(JSON.stringify(shapes[int(shapes.length)])), headers: headersOf(i, 'application/json') };
    }
    case 5:
      // No such codec. Not blank: nats.js trims a value, and an empty content type means the default codec (JSON).
      return { payload: Buffer.from(JSON.stringify({ kind: 'good', n: i })), headers: headersOf(i, `x-${text(int(60))}`) };
    case 6:
      // Two content types: joined, no such codec.
      return { payload: Buffer.from(JSON.stringify({ kind: 'good', n: i })), headers: headersOf(i, 'application/json', [['content-type', 'text/plain']]) };
    case 7:
      // Legal on NATS, refused by ktransport's own publish: a tab in a value. The dead letter goes with the reason headers alone.
      return { payload: Buffer.from(`tabbed-${i}`), headers: headersOf(i, 'application/json', [['x-tab', 'a\tb']]) };
    case 8:
      // Long header values (20 KB) and a 10 KB body that is not JSON.
      return { payload: Buffer.alloc(10_000, 0x7b), headers: headersOf(i, 'application/json', [['x-long', 'v'.repeat(20_000)]]) };
    default:
      return { payload: Buffer.from(JSON.stringify({ kind: 'good', n: i })), headers: headersOf(i, 'application/msgpack') }; // JSON under msgpack
  }
}

/** Good message `n`: JSON, msgpack or no content type. */
function good(n: number): Outgoing {
  const body = { kind: 'good', n };
  const variant = n % 3;
  const h = natsHeaders();
  if (int(2)) h.set(`r-${token(1 + int(10))}`, text(int(30)));
  if (variant === 0) {
    h.set('content-type', 'application/json');
    return { payload: Buffer.from(JSON.stringify(body)), headers: h };
  }
  if (variant === 1) {
    h.set('content-type', 'application/msgpack');
    return { payload: msgpackCodec.encode(body), headers: h };
  }
  return { payload: Buffer.from(JSON.stringify(body)), headers: h };
}

let setup: Admin;

beforeAll(async () => {
  await ensureNats();
  setup = await admin();
}, 30_000);

afterAll(async () => {
  await setup?.close();
}, 30_000);

describe(`fuzz: foreign payloads and headers (seed ${SEED})`, () => {
  it(`handles ${GOOD} good messages and dead-letters ${COUNT} bad ones with bounded reasons, without a reconnect`, async () => {
    const [t, dlq] = [unique('fuzz'), unique('fuzz-dlq')];
    await setup.stream(t);
    await setup.stream(dlq);
    const broker = new NatsBroker({ ...fast });
    await broker.connect();
    const states: ConnectionState[] = [broker.state];
    broker.onStateChange((s) => void states.push(s));
    try {
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
          const tabbed = /^tabbed-(\d+)$/.exec(Buffer.from(m.body).toString('latin1'));
          const id = Number(m.headers['fuzz-id'] ?? tabbed?.[1] ?? Number.NaN);
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
      const js = jetstream(setup.nc);
      const window = new Set<Promise<unknown>>();
      for (let i = 0; i < COUNT; i++) {
        // A good message after every other bad one.
        for (const message of i % 2 === 0 ? [good(i / 2), bad(i)] : [bad(i)]) {
          const sent: Promise<unknown> = js.publish(t, message.payload, { headers: message.headers }).finally(() => window.delete(sent));
          window.add(sent);
          if (window.size >= 256) await Promise.race(window);
        }
      }
      await Promise.all(window);
      const missing = (): string =>
        Array.from({ length: COUNT }, (_, i) => i)
          .filter((i) => !dead.has(i))
          .slice(0, 10)
          .map((i) => `${i} (case ${i % 10})`)
          .join(', ');
      await waitFor(
        () => handled.size === GOOD && dead.size + unidentified.length >= COUNT,
        40_000,
        () =>
          `seed ${SEED}: handled ${handled.size} of ${GOOD}, dead-lettered ${dead.size} of ${COUNT}, states ${states.join(',')}; not dead-lettered: ${missing()}`,
      );
      expect(unbounded, `seed ${SEED}: reasons that are empty, too long or not wire-safe`).toEqual([]);
      expect(unidentified, `seed ${SEED}: dead letters without their id`).toEqual([]);
      expect(
        [...dead.values()].filter((n) => n !== 1),
        `seed ${SEED}: bad messages dead-lettered more than once`,
      ).toEqual([]);
      expect(handledTwice).toBe(0);
      expect(states, `seed ${SEED}`).toEqual(['connected']);
    } finally {
      await broker.disconnect();
    }
  }, 90_000);
});
