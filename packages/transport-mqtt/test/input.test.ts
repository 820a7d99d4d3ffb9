import { ConfigurationError, DEAD_LETTER_HEADER, type Message, PublishError } from '@ktransport/broker';
import { HeadersNotSupportedError, PayloadTooLargeError } from '@ktransport/transport-mqtt';
import { beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ensureMosquitto, tool } from './mosquitto.js';
import { open, outcome, sleep, topic, waitFor } from './helpers.js';

beforeAll(ensureMosquitto);

const pub = (t: string, payload: string, ...properties: string[][]): Promise<string> =>
  tool('mosquitto_pub', ['-h', '127.0.0.1', '-p', '1883', '-V', '5', '-q', '1', '-t', t, ...properties.flatMap((p) => ['-D', 'publish', ...p]), '-m', payload]);

describe('bad input', () => {
  it('refuses to publish to a topic with wildcards or an empty topic', async () => {
    const broker = await open();
    for (const bad of ['a/+/b', 'a/#', '']) expect(await outcome(broker.publish(bad, 1))).toBeInstanceOf(PublishError);
  });

  it('refuses bad subscriptions with a ConfigurationError', async () => {
    const broker = await open();
    const bad = [
      ['a/#/b', {}],
      ['$share/g/a', {}],
      ['a', { group: 'g/h' }],
      ['a', { concurrency: 0 }],
      ['a', { qos: 3 }],
      // Filters MQTT cannot carry: Mosquitto would close the connection, and mqtt.js resubscribe on every reconnect.
      ['a/\u0001', {}],
      ['a/\ud800', {}],
      ['a', { group: 'g\u0085' }],
      [`a/${'x'.repeat(65_535)}`, {}],
    ] as const;
    for (const [filter, options] of bad) {
      expect(await outcome(broker.subscribe(filter, () => undefined, options as never))).toBeInstanceOf(ConfigurationError);
    }
  });

  it('dead-letters undecodable and invalid bodies with the reason; good messages around them are handled', async () => {
    const broker = await open();
    const [t, dlq] = [topic('bad-body'), topic('bad-body-dlq')];
    const handled: { n: number }[] = [];
    const dead: Message<Uint8Array>[] = [];
    await broker.subscribe<Uint8Array>(dlq, (m) => void dead.push(m), { codec: 'bytes' });
    await broker.subscribe(t, (m) => void handled.push(m.body), { schema: z.object({ n: z.number() }), deadLetter: dlq });
    const json = ['content-type', 'application/json'];
    await pub(t, '{"n":1}', json);
    await pub(t, '{"n": oops', json);
    await pub(t, '{"n":"two"}', json);
    await pub(t, 'hello', ['content-type', 'application/x-unknown']);
    await pub(t, '{"n":5}'); // no content type: the default codec (json)
    await waitFor(
      () => handled.length === 2 && dead.length === 3,
      5_000,
      () => `handled ${JSON.stringify(handled)} dead ${dead.length}`,
    );
    expect(handled).toEqual([{ n: 1 }, { n: 5 }]);
    const reasons = dead.map((m) => [Buffer.from(m.body).toString(), m.headers[DEAD_LETTER_HEADER.errorType], m.headers['content-type']]);
    expect(reasons).toEqual([
      ['{"n": oops', 'DECODE_ERROR', 'application/json'],
      ['{"n":"two"}', 'VALIDATION_ERROR', 'application/json'],
      ['hello', 'DECODE_ERROR', 'application/x-unknown'],
    ]);
    expect(dead[1]?.headers[DEAD_LETTER_HEADER.error]).toMatch(/n/);
  });

  it('refuses a payload over maxPayloadBytes with a PayloadTooLargeError', async () => {
    const broker = await open({ maxPayloadBytes: 1_000 });
    const t = topic('big');
    await broker.publish(t, new Uint8Array(1_000), { codec: 'bytes' });
    const error = await outcome(broker.publish(t, new Uint8Array(1_001), { codec: 'bytes' }));
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect(error).toMatchObject({ size: 1_001, limit: 1_000 });
  });
});

describe('MQTT 3.1.1', () => {
  it('carries bodies without headers: explicit headers are refused, automatic ones dropped', async () => {
    const v4 = await open({ protocolVersion: 4 });
    const v5 = await open();
    const t = topic('v311');
    const got: Message[] = [];
    await v4.subscribe(t, (m) => void got.push(m));
    await v5.subscribe(t, (m) => void got.push(m));
    const refused = await outcome(v4.publish(t, { n: 1 }, { headers: { 'x-tenant': 'acme' } }));
    expect(refused).toBeInstanceOf(HeadersNotSupportedError);
    expect(refused).toBeInstanceOf(PublishError);
    await v4.publish(t, { n: 2 }, { key: 'k' }); // content-type, message-id, traceparent and key are not carried
    await v5.publish(t, { n: 3 }, { headers: { 'x-tenant': 'acme' } });
    await waitFor(
      () => got.length === 4,
      5_000,
      () => `got ${got.length}`,
    );
    await sleep(200);
    const seen = got.map((m) => [m.body, m.headers['x-tenant'] ?? null, m.headers['content-type'] ?? null]);
    expect(seen).toEqual(
      expect.arrayContaining([
        [{ n: 2 }, null, null], // at the v4 subscriber
        [{ n: 2 }, null, null], // at the v5 subscriber
        [{ n: 3 }, null, null], // a 3.1.1 subscriber gets no properties
        [{ n: 3 }, 'acme', 'application/json'],
      ]),
    );
  });

  it('still retries and dead-letters (the dead letter has no headers on 3.1.1)', async () => {
    const broker = await open({ protocolVersion: 4 });
    const [t, dlq] = [topic('v311-retry'), topic('v311-dlq')];
    const dead: unknown[] = [];
    await broker.subscribe(dlq, (m) => void dead.push(m.body));
    await broker.subscribe(
      t,
      () => {
        throw new Error('no');
      },
      { retry: { attempts: 2, initialDelayMs: 5 }, deadLetter: dlq },
    );
    await broker.publish(t, { n: 1 });
    await waitFor(
      () => dead.length === 1,
      5_000,
      () => 'nothing dead-lettered',
    );
    expect(dead).toEqual([{ n: 1 }]);
  });
});

describe('routing on one connection', () => {
  it('keeps overlapping filters, groups and plain subscriptions apart, and stops a handler on unsubscribe', async () => {
    for (const protocolVersion of [5, 4] as const) {
      const broker = await open({ protocolVersion });
      const base = topic(`routes-v${protocolVersion}`);
      const got: { exact: number[]; plus: number[]; group: number[]; second: number[] } = { exact: [], plus: [], group: [], second: [] };
      const sub = await broker.subscribe<number>(`${base}/a`, (m) => void got.exact.push(m.body));
      await broker.subscribe<number>(`${base}/a`, (m) => void got.second.push(m.body));
      await broker.subscribe<number>(`${base}/+`, (m) => void got.plus.push(m.body));
      await broker.subscribe<number>(`${base}/a`, (m) => void got.group.push(m.body), { group: 'g' });
      await broker.publish(`${base}/a`, 1);
      await broker.publish(`${base}/b`, 2);
      await waitFor(
        () => got.exact.length === 1 && got.plus.length === 2 && got.group.length === 1,
        5_000,
        () => JSON.stringify(got),
      );
      await sub.unsubscribe();
      await broker.publish(`${base}/a`, 3);
      await waitFor(
        () => got.second.length === 2,
        5_000,
        () => JSON.stringify(got),
      );
      await sleep(200);
      expect(got).toEqual({ exact: [1], second: [1, 3], plus: [1, 2, 3], group: [1, 3] });
    }
  });

  it('subscribes groups to the plain filter with sharedSubscriptions: false (every connection gets every message)', async () => {
    const receivedBy = async (sharedSubscriptions: boolean | undefined): Promise<number[]> => {
      const t = topic(`no-share-${String(sharedSubscriptions)}`);
      const options = sharedSubscriptions === undefined ? {} : { sharedSubscriptions };
      const members = [{ count: 0 }, { count: 0 }];
      const plain: number[] = [];
      for (const member of members) {
        const broker = await open(options);
        await broker.subscribe(t, () => void member.count++, { group: 'g' });
        if (member === members[0]) await broker.subscribe(t, (m) => void plain.push(m.body as number)); // same MQTT filter without $share
      }
      const publisher = await open();
      for (let n = 0; n < 10; n++) await publisher.publish(t, n);
      const counts = (): number[] => members.map((m) => m.count);
      const total = (): number => counts().reduce((a, b) => a + b);
      await waitFor(
        () => total() >= 10 && plain.length === 10,
        5_000,
        () => `counts ${counts().join(',')} plain ${plain.length}`,
      );
      await sleep(200);
      return counts();
    };
    expect(await receivedBy(false)).toEqual([10, 10]);
    const shared = await receivedBy(undefined);
    expect(shared.reduce((a, b) => a + b)).toBe(10);
  });
});
