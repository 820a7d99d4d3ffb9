import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { DEAD_LETTER_ERROR_MAX_BYTES, DEAD_LETTER_HEADER, DeadLetterError, type Message } from '@ktransport/broker';
import { waitFor } from '@ktransport/broker/testing';
import { committedOffsets, createTopic, defined, sharedKafka, unique, until } from './helpers.js';

const kafka = sharedKafka();

describe('KafkaBroker dead letters', () => {
  it('the dead-letter copy keeps the record key, the original headers and the bytes', async () => {
    const [topic, dead] = [await createTopic(kafka.admin, unique('dl-src'), 3), await createTopic(kafka.admin, unique('dl'), 1)];
    const broker = await kafka.connected();
    await broker.subscribe<{ order: number }>(
      topic,
      () => {
        throw new Error('payment service refused');
      },
      { group: unique('g'), deadLetter: dead, retry: { attempts: 2, initialDelayMs: 5 } },
    );
    const copies: Message<Uint8Array>[] = [];
    await broker.subscribe<Uint8Array>(dead, (m) => void copies.push(m), { fromBeginning: true, codec: 'bytes' });
    await broker.publish(topic, { order: 7 }, { key: 'same-customer', headers: { 'x-tenant': 'acmé', 'x-request': 'r-1' } });
    await waitFor(
      () => copies.length === 1,
      15_000,
      () => 'no dead letter',
    );
    const copy = defined(copies[0], 'a dead letter');
    expect(copy.key).toBe('same-customer');
    expect(copy.headers).toMatchObject({
      'x-tenant': 'acmé',
      'x-request': 'r-1',
      'content-type': 'application/json',
      [DEAD_LETTER_HEADER.originalTopic]: topic,
      [DEAD_LETTER_HEADER.error]: 'payment service refused',
      [DEAD_LETTER_HEADER.attempts]: '2',
    });
    expect(JSON.parse(Buffer.from(copy.body).toString('utf8'))).toEqual({ order: 7 });
  });

  it('a body failing validation 20,000 times is dead-lettered with a bounded reason and its partition moves on', async () => {
    const [topic, dead] = [await createTopic(kafka.admin, unique('dl-issues'), 1), await createTopic(kafka.admin, unique('dl'), 1)];
    const group = unique('g');
    const broker = await kafka.connected();
    const handled: number[][] = [];
    await broker.subscribe(topic, (m) => void handled.push(m.body.items), { group, schema: z.object({ items: z.array(z.number()) }), deadLetter: dead });
    const copies: Message<Uint8Array>[] = [];
    await broker.subscribe<Uint8Array>(dead, (m) => void copies.push(m), { fromBeginning: true, codec: 'bytes' });
    await broker.publish(topic, { items: Array.from({ length: 20_000 }, (_, i) => `item-${i}`) }, { key: 'k' });
    await broker.publish(topic, { items: [1, 2] });
    await waitFor(
      () => copies.length === 1 && handled.length === 1,
      20_000,
      () => `dead ${copies.length}, handled ${handled.length}`,
    );
    expect(handled).toEqual([[1, 2]]);
    const copy = defined(copies[0], 'a dead letter');
    const reason = defined(copy.headers[DEAD_LETTER_HEADER.error], 'the reason header');
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(DEAD_LETTER_ERROR_MAX_BYTES);
    expect(reason).toMatch(/and 19990 more issue/);
    expect(copy.headers[DEAD_LETTER_HEADER.errorType]).toBe('VALIDATION_ERROR');
    expect(copy.key).toBe('k');
    await until(async () => (await committedOffsets(kafka.admin, group, topic)).get(0) === 2, 'offset 2 is committed', 10_000);
  });

  it('a copy the dead-letter topic refuses with its original headers goes with the reason headers alone', async () => {
    const topic = await createTopic(kafka.admin, unique('dl-headers'), 1);
    const dead = await createTopic(kafka.admin, unique('dl-small'), 1, { 'max.message.bytes': '20000' });
    const broker = await kafka.connected();
    const handled: number[] = [];
    await broker.subscribe<{ n: number }>(
      topic,
      (m) => {
        if (m.body.n === 1) throw new Error('rejected');
        handled.push(m.body.n);
      },
      { group: unique('g'), deadLetter: dead },
    );
    const copies: Message<Uint8Array>[] = [];
    await broker.subscribe<Uint8Array>(dead, (m) => void copies.push(m), { fromBeginning: true, codec: 'bytes' });
    // Accepted by the source topic (default 1 MB), too large for the dead-letter topic with these headers.
    await broker.publish(topic, { n: 1 }, { key: 'customer-1', headers: { 'x-big': 'h'.repeat(30_000) } });
    await broker.publish(topic, { n: 2 });
    await waitFor(
      () => copies.length === 1 && handled.length === 1,
      20_000,
      () => `dead ${copies.length}, handled ${handled.join(',')}`,
    );
    const copy = defined(copies[0], 'a dead letter');
    expect(copy.key).toBe('customer-1');
    expect(copy.headers[DEAD_LETTER_HEADER.headersDropped]).toBe('true');
    expect(copy.headers[DEAD_LETTER_HEADER.error]).toBe('rejected');
    expect(copy.headers['x-big']).toBeUndefined();
    expect(JSON.parse(Buffer.from(copy.body).toString('utf8'))).toEqual({ n: 1 });
  });

  it('a message the dead-letter topic refuses for good is reported through onError and its partition moves on', async () => {
    const topic = await createTopic(kafka.admin, unique('dl-refused'), 1);
    const dead = await createTopic(kafka.admin, unique('dl-tiny'), 1, { 'max.message.bytes': '10000' });
    const group = unique('g');
    const reported: unknown[] = [];
    const broker = await kafka.connected({ onError: (error) => void reported.push(error) });
    const handled: number[] = [];
    let attempts = 0;
    await broker.subscribe<{ n: number }>(
      topic,
      (m) => {
        if (m.body.n !== 1) return void handled.push(m.body.n);
        attempts++;
        throw new Error('rejected');
      },
      { group, deadLetter: dead },
    );
    await broker.publish(topic, { n: 1, pad: 'p'.repeat(30_000) }, { key: 'customer-9' });
    await broker.publish(topic, { n: 2 });
    await waitFor(
      () => handled.length === 1 && reported.length === 1,
      20_000,
      () => `handled ${handled.join(',')}, reported ${reported.length}`,
    );
    expect(attempts).toBe(1);
    const error = reported[0] as DeadLetterError;
    expect(error).toBeInstanceOf(DeadLetterError);
    expect(error.deadLetterTopic).toBe(dead);
    expect(error.originalTopic).toBe(topic);
    expect(error.message).toMatch(/partition 0, offset 0, key customer-9/);
    expect(error.message).toMatch(/larger than the topic accepts/);
    await until(async () => (await committedOffsets(kafka.admin, group, topic)).get(0) === 2, 'offset 2 is committed', 10_000);
    const reread: number[] = [];
    await broker.subscribe<{ n: number }>(dead, (m) => void reread.push(m.body.n), { fromBeginning: true });
    await broker.publish(dead, { n: 3 });
    await waitFor(
      () => reread.includes(3),
      10_000,
      () => `dead-letter topic holds ${reread.join(',')}`,
    );
    expect(reread).toEqual([3]);
  });
});
