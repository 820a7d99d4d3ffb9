import { type ConnectionState, DEAD_LETTER_HEADER, type Message, msgpackCodec } from '@ktransport/broker';
import { type CodePointRange, fuzz, fuzzSeed } from '@ktransport/broker/testing';
import { invalidTextIndex } from '@ktransport/broker/transport';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { open, raw, topic, waitFor } from './helpers.js';

/**
 * Hostile input from a foreign writer: 10,000 stream entries no subscriber can
 * accept (random bytes, control characters, invalid UTF-8, garbage under each
 * content type, unknown content types, entries without a payload field, field
 * names and values with control characters, invalid UTF-8 or nothing at all,
 * values of 100 KB) interleaved with 10,000 good ones, XADDed by a plain
 * @redis/client connection to a group subscription with a schema and a
 * dead-letter topic. Every good message is handled once, every bad one is
 * dead-lettered once with a bounded, wire-safe reason, and the connection never
 * drops. The generator is seeded: a failure names the seed that reproduces it.
 */

const COUNT = 10_000;
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

type Field = string | Buffer;

/** One to three random header fields that ktransport could write too. */
function randomFields(): Field[] {
  const out: Field[] = [];
  for (let i = 1 + int(3); i > 0; i--) out.push(`r-${text(1 + int(12))}`, text(int(40)));
  return out;
}

const CONTROL = Buffer.from(Array.from({ length: 32 }, (_, i) => i).concat([0x7f]));
const INVALID_UTF8 = [Buffer.from([0xff]), Buffer.from([0xc3, 0x28]), Buffer.from([0xe2, 0x28, 0xa1]), Buffer.from([0xed, 0xa0, 0x80])];

/**
 * Bad entry `i` as XADD fields. Entries whose headers ktransport cannot write
 * again (the dead letter then goes with the reason headers alone) carry
 * `odd-<i>` as their payload; the others a `fuzz-id` field.
 */
function bad(i: number): Field[] {
  const id: Field[] = ['fuzz-id', String(i)];
  const json: Field[] = ['content-type', 'application/json'];
  switch (i % 12) {
    case 0:
      return ['payload', bytes(1 + int(64)), ...json, ...randomFields(), ...id];
    case 1:
      return ['payload', bytes(1 + int(64)), ...randomFields(), ...id]; // the default codec (json)
    case 2:
      return ['payload', Buffer.concat([CONTROL.subarray(int(16)), bytes(int(8))]), 'content-type', 'text/plain', ...id];
    case 3:
      return ['payload', Buffer.concat([Buffer.from('{"kind":"good","n":'), INVALID_UTF8[int(4)] ?? CONTROL, Buffer.from('}')]), ...json, ...id];
    case 4:
      return ['payload', bytes(1 + int(64)), 'content-type', 'application/msgpack', ...id];
    case 5: {
      const shapes = [{ kind: 'bad', n: i }, [1, 2, 3], 'text', null, { kind: 'good', n: 'x'.repeat(int(100)) }, { kind: 'good', n: i + 0.5 }];
      return ['payload', JSON.stringify(shapes[int(shapes.length)]), ...json, ...id];
    }
    case 6:
      return ['payload', JSON.stringify({ kind: 'good', n: i }), 'content-type', text(1 + int(60)), ...id]; // no such codec
    case 7:
      // No payload field at all: a foreign layout.
      return [int(2) ? 'body' : 'data', JSON.stringify({ kind: 'good', n: i }), ...json, ...id];
    case 8:
      return ['payload', JSON.stringify({ kind: 'good', n: i }), 'content-type', 'application/msgpack', ...id]; // JSON under msgpack
    case 9:
      // Field names and values ktransport would not write: control characters, invalid UTF-8, an empty name.
      return [
        'payload',
        `odd-${i}`,
        ...json,
        Buffer.concat([Buffer.from('x-'), CONTROL.subarray(int(30), 32)]),
        'v',
        'x-value',
        Buffer.concat([Buffer.from('v'), CONTROL.subarray(0, 1 + int(8))]),
        '',
        'empty name',
      ];
    case 10:
      // A 100 KB header value and a payload field given twice (the last one counts).
      return ['payload', JSON.stringify({ kind: 'good', n: i }), ...json, 'long', 'v'.repeat(100_000), 'payload', bytes(4), ...id];
    default:
      return ['payload', text(1 + int(100)), ...json, ...id];
  }
}

/** Good message `n`: JSON, msgpack or no content type, sometimes with random valid header fields. */
function good(n: number): Field[] {
  const body = { kind: 'good', n };
  const extra = int(2) ? randomFields() : [];
  const variant = n % 3;
  if (variant === 0) return ['payload', JSON.stringify(body), 'content-type', 'application/json', ...extra];
  if (variant === 1) return ['payload', Buffer.from(msgpackCodec.encode(body)), 'content-type', 'application/msgpack', ...extra];
  return ['payload', JSON.stringify(body), ...extra];
}

describe(`fuzz: foreign entries (seed ${SEED})`, () => {
  it(`handles ${COUNT} good entries and dead-letters ${COUNT} bad ones with bounded reasons, without a reconnect`, async () => {
    const broker = await open();
    const states: ConnectionState[] = [broker.state];
    broker.onStateChange((s) => void states.push(s));
    const t = topic('fuzz');
    const dlq = `${t}-dlq`;
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
        const odd = /^odd-(\d+)$/.exec(Buffer.from(m.body).toString('latin1'));
        const id = Number(m.headers['fuzz-id'] ?? odd?.[1] ?? Number.NaN);
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
      { group: 'fuzz', schema: z.object({ kind: z.literal('good'), n: z.number().int() }), deadLetter: dlq, concurrency: 16 },
    );

    const writer = await raw();
    const started = Date.now();
    for (let i = 0; i < COUNT; i += 250) {
      const batch: Promise<unknown>[] = [];
      for (let j = i; j < Math.min(COUNT, i + 250); j++) {
        batch.push(writer.sendCommand(['XADD', t, '*', ...good(j)]), writer.sendCommand(['XADD', t, '*', ...bad(j)]));
      }
      await Promise.all(batch);
    }

    const missing = (): string =>
      Array.from({ length: COUNT }, (_, i) => i)
        .filter((i) => !dead.has(i))
        .slice(0, 10)
        .map((i) => `${i} (case ${i % 12})`)
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
      `seed ${SEED}: bad entries dead-lettered more than once`,
    ).toEqual([]);
    expect(handledTwice).toBe(0);
    expect(states, `seed ${SEED}`).toEqual(['connected']);
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 90_000);
});
