import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type ConnectionState, DEAD_LETTER_ERROR_MAX_BYTES, DEAD_LETTER_HEADER, type Message, msgpackCodec } from '@ktransport/broker';
import { fuzz, waitFor } from '@ktransport/broker/testing';
import kafkajs, { type IHeaders, type Message as KafkaRecord } from 'kafkajs';
import { createTopic, defined, KAFKA, sharedKafka, unique } from './helpers.js';

const { Kafka, logLevel } = kafkajs;

const kafka = sharedKafka();

const GOOD = 10_000;
const BAD = 10_000;
/** Bad records of several hundred kilobytes (accepted by the topic's default 1 MB limit). */
const OVERSIZED = 12;

const Good = z.object({ kind: z.literal('good'), n: z.number().int(), tags: z.array(z.string()).optional() });
/** Every this many bad records, one whose `tags` fail validation thousands of times (the issue's remote trigger of huge reasons). */
const MANY_ISSUES_EVERY = 400;

class Fuzzer {
  readonly #next: () => number;
  constructor(seed: number) {
    // The core kit's seeded generator (mulberry32): every run sends the same records, and a failure can be replayed.
    this.#next = fuzz(seed).random;
  }

  int(max: number): number {
    return Math.floor(this.#next() * max);
  }

  pick<T>(items: readonly T[]): T {
    return defined(items[this.int(items.length)], 'an item to pick');
  }

  bytes(max: number): Buffer {
    const out = Buffer.alloc(this.int(max + 1));
    for (let i = 0; i < out.length; i++) out[i] = this.int(256);
    return out;
  }

  /** Text with control characters, C1 controls, lone surrogates, noncharacters and ordinary letters. */
  text(max: number): string {
    const pieces = [
      'a',
      'é',
      '\u0000',
      '\u0001',
      '\n',
      '\u001b',
      '\u007f',
      '\u0085',
      '\u009f',
      '\ud800',
      '\udfff',
      '\ufffe',
      '\uffff',
      '\u2028',
      '😀',
      '"',
      '\\',
      '{',
    ];
    let out = '';
    const length = this.int(max + 1);
    for (let i = 0; i < length; i++) out += this.pick(pieces);
    return out;
  }

  /** Bytes that are not valid UTF-8: lone continuation bytes, truncated sequences, overlongs, surrogates. */
  invalidUtf8(): Buffer {
    const pieces = [[0x80], [0xbf], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xff], [0xc3], [0x41]];
    const out: number[] = [];
    for (let i = 0, n = 1 + this.int(40); i < n; i++) out.push(...this.pick(pieces));
    return Buffer.from(out);
  }

  /** Up to 6 headers with arbitrary names and byte values, some repeated (kafkajs sends an array as repeated headers). */
  headers(): IHeaders {
    const out: IHeaders = {};
    for (let i = 0, n = this.int(7); i < n; i++) {
      const name = this.int(4) === 0 ? this.pick(['traceparent', 'tracestate', 'message-id', 'x-dead-letter-error', 'baggage']) : `h${this.text(12)}`;
      out[name] = this.int(5) === 0 ? [this.bytes(64), this.invalidUtf8()] : this.int(2) === 0 ? this.bytes(512) : this.text(64);
    }
    return out;
  }

  /** A foreign record ktransport must dead-letter: garbage under every content type, or no content type at all. */
  bad(i: number): KafkaRecord {
    const headers = this.headers();
    let value: Buffer | null;
    switch (i % MANY_ISSUES_EVERY === 7 ? 9 : this.int(9)) {
      case 0:
        value = this.bytes(2_000);
        break;
      case 1:
        value = this.invalidUtf8();
        headers['content-type'] = 'text/plain; charset=utf-8';
        break;
      case 2:
        value = this.int(2) === 0 ? this.bytes(300) : Buffer.from(`{"kind":"good","n":${this.text(10)}`);
        headers['content-type'] = 'application/json';
        break;
      case 3:
        value = this.bytes(300);
        headers['content-type'] = 'application/msgpack';
        break;
      case 4:
        // Well-formed, but not what the schema wants (control characters in a JSON string, a wrong type).
        value = Buffer.from(JSON.stringify(this.int(2) === 0 ? { kind: this.text(20), n: i } : { kind: 'good', n: this.text(5) }));
        headers['content-type'] = 'application/json';
        break;
      case 5:
        value = Buffer.from(msgpackCodec.encode({ kind: 'good', n: this.text(8) }));
        headers['content-type'] = 'application/msgpack';
        break;
      case 6:
        value = this.bytes(200);
        headers['content-type'] = this.int(2) === 0 ? this.text(100) : this.bytes(100);
        break;
      case 7:
        value = this.int(2) === 0 ? null : Buffer.alloc(0);
        break;
      case 8:
        value = Buffer.concat([Buffer.from('{"kind":"good","n":1'), this.invalidUtf8(), Buffer.from('}')]);
        headers['content-type'] = this.pick(['application/json', 'text/plain', 'application/msgpack']);
        break;
      default:
        value = Buffer.from(JSON.stringify({ kind: 'good', n: i, tags: Array.from({ length: 5_000 + this.int(15_000) }, (_, t) => t) }));
    }
    headers['x-fuzz-id'] = `bad-${i}`;
    return { key: this.int(3) === 0 ? null : this.bytes(40), value, headers };
  }

  /** A record of a foreign publisher that ktransport must handle: JSON with or without a content type, or msgpack; odd extra headers. */
  good(n: number): KafkaRecord {
    const headers = this.headers();
    delete headers['content-type'];
    const body = this.int(4) === 0 ? { kind: 'good', n, tags: [this.text(10), 'ok'] } : { kind: 'good', n };
    let value: Buffer;
    switch (this.int(3)) {
      case 0:
        value = Buffer.from(JSON.stringify(body));
        break;
      case 1:
        value = Buffer.from(JSON.stringify(body));
        headers['content-type'] = 'application/json';
        break;
      default:
        value = Buffer.from(msgpackCodec.encode(body));
        headers['content-type'] = 'application/msgpack';
    }
    headers['x-fuzz-id'] = `good-${n}`;
    return { key: this.int(2) === 0 ? null : this.bytes(20), value, headers };
  }
}

describe('KafkaBroker against hostile foreign records', () => {
  it('handles 10,000 good records and dead-letters 10,000 bad ones (random bytes, invalid UTF-8, garbage under each content type, thousands of validation issues, arbitrary headers and keys) with bounded reasons and their keys, staying connected', async () => {
    const topic = await createTopic(kafka.admin, unique('fuzz'), 3);
    const dead = await createTopic(kafka.admin, unique('fuzz-dlq'), 3);
    const broker = await kafka.connected({ tracing: true });
    const states: ConnectionState[] = [];
    broker.onStateChange((state) => states.push(state));
    const handled = new Set<number>();
    let wronglyHandled = 0;
    await broker.subscribe(
      topic,
      (m) => {
        if (m.headers['x-fuzz-id'] !== `good-${m.body.n}`) wronglyHandled++;
        handled.add(m.body.n);
      },
      { group: unique('g'), schema: Good, deadLetter: dead, concurrency: 3 },
    );
    const deadLetters = new Map<string, Message<Uint8Array>>();
    await broker.subscribe<Uint8Array>(dead, (m) => void deadLetters.set(m.headers['x-fuzz-id'] ?? '?', m), {
      fromBeginning: true,
      codec: 'bytes',
      concurrency: 3,
    });

    const raw = new Kafka({ brokers: [KAFKA], clientId: 'foreign-publisher', logLevel: logLevel.NOTHING }).producer();
    await raw.connect();
    const fuzz = new Fuzzer(20_261_130);
    /** The key each bad record's copy must carry: its bytes as UTF-8 text, as ktransport reads record keys. */
    const keys = new Map<string, string | undefined>();
    const send = (records: KafkaRecord[]): Promise<unknown> => {
      for (const r of records) {
        const id = String((r.headers as IHeaders)['x-fuzz-id']);
        if (id.startsWith('bad-')) keys.set(id, r.key === null || r.key === undefined ? undefined : Buffer.from(r.key).toString('utf8'));
      }
      return raw.send({ topic, messages: records });
    };
    const started = Date.now();
    try {
      const oversized = new Set(Array.from({ length: OVERSIZED }, (_, i) => Math.floor(((i + 0.5) * BAD) / OVERSIZED)));
      let chunk: KafkaRecord[] = [];
      for (let i = 0; i < GOOD + BAD; i++) {
        const n = i >> 1;
        if (i % 2 === 1 && oversized.has(n)) {
          // Too large to share a request with others under the topic's 1 MB limit: sent alone.
          const big = { ...fuzz.bad(n), value: fuzz.bytes(700_000).subarray(0, 300_000 + fuzz.int(400_000)) };
          await send([big]);
          continue;
        }
        chunk.push(i % 2 === 0 ? fuzz.good(n) : fuzz.bad(n));
        if (chunk.length === 500) {
          await send(chunk);
          chunk = [];
        }
      }
      if (chunk.length > 0) await send(chunk);
    } finally {
      await raw.disconnect();
    }

    await waitFor(
      () => handled.size === GOOD && deadLetters.size === BAD,
      90_000,
      () => `handled ${handled.size} of ${GOOD}, dead-lettered ${deadLetters.size} of ${BAD}`,
    );
    console.log(`fuzz: ${GOOD + BAD} records published and processed in ${Date.now() - started} ms`);
    expect(wronglyHandled).toBe(0);
    for (const [id, copy] of deadLetters) {
      expect(id).toMatch(/^bad-\d+$/);
      const reason = copy.headers[DEAD_LETTER_HEADER.error] ?? '';
      expect(reason.length, id).toBeGreaterThan(0);
      expect(Buffer.byteLength(reason), id).toBeLessThanOrEqual(DEAD_LETTER_ERROR_MAX_BYTES);
      expect(['DECODE_ERROR', 'VALIDATION_ERROR'], id).toContain(copy.headers[DEAD_LETTER_HEADER.errorType]);
      expect(copy.key, id).toBe(keys.get(id));
    }
    const manyIssues = [...deadLetters.values()].filter((m) => /more issue/.test(m.headers[DEAD_LETTER_HEADER.error] ?? ''));
    expect(manyIssues.length).toBe(Math.ceil((BAD - 7) / MANY_ISSUES_EVERY));
    expect(states).toEqual([]);
    expect(broker.state).toBe('connected');
  }, 150_000);
});
