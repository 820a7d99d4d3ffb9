import { ConfigurationError, DEAD_LETTER_HEADER, type Message, PublishError, SubscribeError } from '@ktransport/broker';
import { InvalidHeaderError, RedisReplyError, type RedisStreamEntry, WrongTypeError } from '@ktransport/transport-redis';
import { describe, expect, it } from 'vitest';
import { eventually, open, outcome, raw, sleep, states, topic, waitFor } from './helpers.js';

/** XRANGE of `key` as [id, {field: value as text}] pairs, fields in order. */
async function entries(key: string): Promise<[string, [string, string][]][]> {
  const client = await raw();
  const reply = await client.sendCommand<[Buffer, Buffer[]][]>(['XRANGE', key, '-', '+']);
  return reply.map(([id, fields]) => {
    const pairs: [string, string][] = [];
    for (let i = 0; i + 1 < fields.length; i += 2) pairs.push([String(fields[i]), String(fields[i + 1])]);
    return [String(id), pairs];
  });
}

describe('the stream entry layout', () => {
  it('writes the payload field with exactly the codec bytes, then one field per header and the key', async () => {
    const broker = await open();
    const t = topic('layout');
    await broker.publish(t, { a: 1, s: 'é' }, { headers: { tenant: 'acme', 'x-empty': '' }, key: 'customer-7' });
    const [entry] = await entries(t);
    expect(entry?.[1]).toEqual([
      ['payload', '{"a":1,"s":"é"}'],
      ['tenant', 'acme'],
      ['x-empty', ''],
      ['content-type', 'application/json'],
      ['message-key', 'customer-7'],
    ]);
  });

  it('gives the received message the entry id, its time, the key and the native entry', async () => {
    const broker = await open();
    const t = topic('received');
    const got: Message[] = [];
    await broker.subscribe(t, (m) => void got.push(m));
    await broker.publish(t, { a: 1 }, { key: 'k1', headers: { h: 'v' } });
    await waitFor(
      () => got.length === 1,
      5_000,
      () => 'nothing received',
    );
    const [entry] = await entries(t);
    const m = got[0];
    expect(m?.id).toBe(entry?.[0]);
    expect(m?.key).toBe('k1');
    expect(m?.headers).toMatchObject({ h: 'v', 'content-type': 'application/json', 'message-key': 'k1' });
    expect(Math.abs((m?.timestamp ?? 0) - Date.now())).toBeLessThan(60_000);
    const native = m?.raw as RedisStreamEntry;
    expect(native.stream).toBe(t);
    expect(native.id).toBe(m?.id);
    expect(native.claimed).toBe(false);
    expect(native.deliveries).toBeUndefined();
    expect(native.fields.map(String).slice(0, 2)).toEqual(['payload', '{"a":1}']);
  });

  it('names stream keys with keyPrefix', async () => {
    const t = topic('prefixed');
    const broker = await open({ keyPrefix: `${t}:` });
    const got: unknown[] = [];
    await broker.subscribe(t, (m) => void got.push(m.body), { group: 'g' });
    await broker.publish(t, { n: 1 });
    await waitFor(
      () => got.length === 1,
      5_000,
      () => 'nothing received',
    );
    const client = await raw();
    expect(await client.sendCommand(['XLEN', `${t}:${t}`])).toBe(1);
    expect(await client.sendCommand(['EXISTS', t])).toBe(0);
    // Disconnected first: a group reader whose stream is deleted makes it again (see Reconnect in the README).
    await broker.disconnect();
    await client.sendCommand(['DEL', `${t}:${t}`]);
  });

  it('trims the stream with maxLen (MAXLEN ~)', async () => {
    const broker = await open();
    const [trimmed, full] = [topic('maxlen'), topic('nomaxlen')];
    for (let n = 0; n < 1_000; n++) await Promise.all([broker.publish(trimmed, { n }, { maxLen: 10 }), broker.publish(full, { n })]);
    const client = await raw();
    const length = Number(await client.sendCommand(['XLEN', trimmed]));
    // Redis trims whole nodes of 100 entries with ~: about 10, never the 1,000 written.
    expect(length).toBeLessThanOrEqual(110);
    expect(length).toBeGreaterThanOrEqual(10);
    expect(await client.sendCommand(['XLEN', full])).toBe(1_000);
    expect(await outcome(broker.publish(trimmed, {}, { maxLen: -1 }))).toBeInstanceOf(PublishError);
  });
});

describe('what is refused before anything is written', () => {
  it('refuses headers ktransport does not write, without touching the connection', async () => {
    const broker = await open();
    const seen = states(broker);
    const t = topic('bad-headers');
    const bad: Record<string, string>[] = [{ payload: 'x' }, { '': 'x' }, { 'a\nb': 'x' }, { ok: 'line\u0000break' }, { ok: 'lone \ud800' }];
    for (const headers of bad) {
      const error = await outcome(broker.publish(t, { n: 1 }, { headers }));
      expect(error).toBeInstanceOf(InvalidHeaderError);
      expect((error as InvalidHeaderError).retriable).toBe(false);
    }
    await broker.publish(t, { n: 2 });
    expect((await entries(t)).length).toBe(1);
    expect(seen).toEqual(['connected']);
  });

  it('refuses wildcard filters at subscribe', async () => {
    const broker = await open();
    for (const filter of ['a/+/b', 'a/#']) expect(await outcome(broker.subscribe(filter, () => undefined))).toBeInstanceOf(ConfigurationError);
    expect(await outcome(broker.subscribe(topic('fb'), () => undefined, { fromBeginning: true }))).toBeInstanceOf(ConfigurationError);
  });

  it('turns WRONGTYPE into typed errors for publish and subscribe', async () => {
    const broker = await open();
    const t = topic('wrongtype');
    const client = await raw();
    await client.sendCommand(['SET', t, 'a string']);
    const published = await outcome(broker.publish(t, { n: 1 }));
    expect(published).toBeInstanceOf(WrongTypeError);
    expect((published as WrongTypeError).retriable).toBe(false);
    const refused = await outcome(broker.subscribe(t, () => undefined));
    expect(refused).toBeInstanceOf(SubscribeError);
    expect((refused as SubscribeError).cause).toBeInstanceOf(RedisReplyError);
    expect(((refused as SubscribeError).cause as RedisReplyError).reply).toBe('WRONGTYPE');
    expect(await outcome(broker.subscribe(t, () => undefined, { group: 'g' }))).toBeInstanceOf(SubscribeError);
    expect(broker.state).toBe('connected');
  });
});

describe('groups', () => {
  it('starts a new group at $ by default and at the first entry with fromBeginning', async () => {
    const broker = await open();
    const t = topic('start');
    for (let n = 0; n < 5; n++) await broker.publish(t, { n });
    const fresh: number[] = [];
    const all: number[] = [];
    await broker.subscribe<{ n: number }>(t, (m) => void fresh.push(m.body.n), { group: 'new' });
    await broker.subscribe<{ n: number }>(t, (m) => void all.push(m.body.n), { group: 'old', fromBeginning: true });
    await broker.publish(t, { n: 5 });
    await waitFor(
      () => fresh.length === 1 && all.length === 6,
      5_000,
      () => `fresh ${fresh.join(',')} all ${all.join(',')}`,
    );
    expect(fresh).toEqual([5]);
    expect(all).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('acknowledges after the handler: nothing stays pending, and the consumer leaves the group on unsubscribe', async () => {
    const broker = await open();
    const t = topic('acks');
    let handled = 0;
    const subscription = await broker.subscribe(t, () => void handled++, { group: 'g', concurrency: 4 });
    for (let n = 0; n < 100; n++) await broker.publish(t, { n });
    await waitFor(
      () => handled === 100,
      5_000,
      () => `handled ${handled}`,
    );
    const client = await raw();
    await eventually(
      async () => ((await client.sendCommand<unknown[]>(['XPENDING', t, 'g']))[0] as number) === 0,
      5_000,
      () => 'entries still pending',
    );
    await subscription.unsubscribe();
    const consumers = await client.sendCommand<unknown[]>(['XINFO', 'CONSUMERS', t, 'g']);
    expect(consumers).toEqual([]);
    // And on disconnect.
    // (Redis 7.0 adds a consumer to the group when it first reads an entry.)
    await broker.subscribe(t, () => void handled++, { group: 'g' });
    await broker.publish(t, { n: 100 });
    await waitFor(
      () => handled === 101,
      5_000,
      () => `handled ${handled}`,
    );
    expect(await client.sendCommand<unknown[]>(['XINFO', 'CONSUMERS', t, 'g'])).toHaveLength(1);
    await broker.disconnect();
    expect(await client.sendCommand<unknown[]>(['XINFO', 'CONSUMERS', t, 'g'])).toEqual([]);
  });

  it('claims entries another member left pending after claimIdleMs, with the delivery marked as claimed', async () => {
    const t = topic('claim');
    const client = await raw();
    await client.sendCommand(['XGROUP', 'CREATE', t, 'g', '$', 'MKSTREAM']);
    await client.sendCommand(['XADD', t, '*', 'payload', '{"n":1}', 'content-type', 'application/json']);
    // A member that read the entry and died: it stays pending for "ghost".
    await client.sendCommand(['XREADGROUP', 'GROUP', 'g', 'ghost', 'COUNT', '10', 'STREAMS', t, '>']);
    const broker = await open({ claimIdleMs: 500 });
    const got: Message[] = [];
    const begun = Date.now();
    await broker.subscribe(t, (m) => void got.push(m), { group: 'g' });
    await waitFor(
      () => got.length === 1,
      5_000,
      () => 'the pending entry was not claimed',
    );
    expect(Date.now() - begun).toBeGreaterThanOrEqual(300);
    expect((got[0]?.raw as RedisStreamEntry).claimed).toBe(true);
    // Read once by the ghost, then claimed: Redis counts two deliveries.
    expect((got[0]?.raw as RedisStreamEntry).deliveries).toBe(2);
    expect(got[0]?.body).toEqual({ n: 1 });
    await eventually(
      async () => ((await client.sendCommand<unknown[]>(['XPENDING', t, 'g']))[0] as number) === 0,
      5_000,
      () => 'the claimed entry was not acknowledged',
    );
  });

  it('keeps the entries it holds: a slow handler longer than claimIdleMs is not handled twice by another member', async () => {
    const t = topic('lease');
    const a = await open({ claimIdleMs: 600 });
    const b = await open({ claimIdleMs: 600 });
    const runs: string[] = [];
    const slow = (who: string) => async (m: Message<{ n: number }>) => {
      runs.push(`${who}:${m.body.n}`);
      await sleep(2_000);
    };
    await a.subscribe(t, slow('a'), { group: 'g' });
    await a.publish(t, { n: 1 });
    await waitFor(
      () => runs.length === 1,
      5_000,
      () => 'nothing started',
    );
    await b.subscribe(t, slow('b'), { group: 'g' });
    await sleep(2_200);
    expect(runs).toEqual(['a:1']);
  });
});

describe('foreign entries', () => {
  it('dead-letters an entry without a payload field with a bounded reason', async () => {
    const broker = await open();
    const t = topic('no-payload');
    const dlq = `${t}-dlq`;
    const dead: Message<Uint8Array>[] = [];
    const handled: unknown[] = [];
    await broker.subscribe<Uint8Array>(dlq, (m) => void dead.push(m), { codec: 'bytes' });
    await broker.subscribe(t, (m) => void handled.push(m.body), { group: 'g', deadLetter: dlq });
    const client = await raw();
    await client.sendCommand(['XADD', t, '*', 'body', '{"n":1}', 'content-type', 'application/json']);
    await client.sendCommand(['XADD', t, '*', 'payload', '{"n":2}']);
    await waitFor(
      () => dead.length === 1 && handled.length === 1,
      5_000,
      () => `dead ${dead.length} handled ${handled.length}`,
    );
    expect(handled).toEqual([{ n: 2 }]);
    expect(dead[0]?.headers[DEAD_LETTER_HEADER.error]).toBe(`the stream entry on ${t} has no "payload" field`);
    expect(dead[0]?.headers[DEAD_LETTER_HEADER.errorType]).toBe('DECODE_ERROR');
    expect(dead[0]?.headers.body).toBe('{"n":1}');
    expect(dead[0]?.body.byteLength).toBe(0);
  });
});

describe('redelivery in process', () => {
  it('runs a message whose handler chain failed again after redeliveryDelayMs, then acknowledges it', async () => {
    const broker = await open({ redeliveryDelayMs: 400 });
    const t = topic('redelivery');
    const attempts: number[] = [];
    const deliveries: (number | undefined)[] = [];
    await broker.subscribe(
      t,
      (m) => {
        attempts.push(Date.now());
        deliveries.push((m.raw as RedisStreamEntry).deliveries);
        if (attempts.length === 1) throw new Error('first attempt fails');
      },
      { group: 'g' },
    );
    await broker.publish(t, { n: 1 });
    await waitFor(
      () => attempts.length === 2,
      5_000,
      () => `attempts ${attempts.length}`,
    );
    expect((attempts[1] ?? 0) - (attempts[0] ?? 0)).toBeGreaterThanOrEqual(380);
    // Redelivered in process: Redis delivered it once.
    expect(deliveries).toEqual([1, 1]);
    const client = await raw();
    await eventually(
      async () => ((await client.sendCommand<unknown[]>(['XPENDING', t, 'g']))[0] as number) === 0,
      5_000,
      () => 'not acknowledged',
    );
  });
});
