import { randomUUID } from 'node:crypto';
import { ConnectionError, RemoteError } from '@ktransport/broker';
import { WrongTypeError } from '@ktransport/transport-redis';
import { afterAll, describe, expect, it } from 'vitest';
import { eventually, open, raw, sleep, states, topic, waitFor } from './helpers.js';
import { cli, PrivateRedis } from './redis.js';

const REPLY_KEY = /^ktransport:reply:[0-9a-f-]{36}$/;

/** Keys a test made outside `topic()` (prefixed ones), DELeted after the file. */
const extraKeys = new Set<string>();
afterAll(async () => {
  if (extraKeys.size === 0) return;
  const client = await raw();
  await client.sendCommand(['DEL', ...extraKeys]).catch(() => undefined);
});

type Entry = [id: string, fields: Record<string, string>];

/** The entries of an XREAD reply: RESP2 (a list of [key, entries]) or RESP3 (a map of key to entries, a Map or an object). */
function entriesOf(reply: unknown): Entry[] {
  if (reply === null || typeof reply !== 'object') return [];
  const lists: unknown[] = reply instanceof Map ? [...reply.values()] : Array.isArray(reply) ? reply.map((s) => (s as unknown[])[1]) : Object.values(reply);
  return lists.flatMap((entries) =>
    (entries as [Buffer, Buffer[]][]).map(([id, list]): Entry => {
      const fields: Record<string, string> = {};
      for (let i = 0; i + 1 < list.length; i += 2) fields[String(list[i])] = String(list[i + 1]);
      return [String(id), fields];
    }),
  );
}

describe('request–reply over Redis Streams (reply-to and correlation-id fields)', () => {
  it('answers a redis-cli requester on the stream its reply-to field names, with its correlation-id; the request is acknowledged', async () => {
    const t = topic('rr-cli-requester');
    const inbox = topic('rr-cli-inbox');
    const responder = await open();
    await responder.subscribe<{ n: number }>(t, (m) => ({ double: m.body.n * 2 }), { group: 'doublers' });
    const client = await raw();
    // The foreign requester makes nothing beforehand: it XADDs its request, then reads its own stream from the start.
    await cli(['XADD', t, '*', 'payload', '{"n":21}', 'content-type', 'application/json', 'reply-to', inbox, 'correlation-id', 'order-42']);
    const reply = entriesOf(await client.sendCommand(['XREAD', 'COUNT', '10', 'BLOCK', '5000', 'STREAMS', inbox, '0']));
    expect(reply).toHaveLength(1);
    const fields = reply[0]?.[1] ?? {};
    expect(JSON.parse(fields.payload ?? '')).toEqual({ double: 42 });
    expect(fields['correlation-id']).toBe('order-42');
    expect(fields['content-type']).toMatch(/^application\/json/);
    expect(fields['reply-to']).toBeUndefined();
    await eventually(
      async () => String(((await client.sendCommand<unknown[]>(['XPENDING', t, 'doublers'])) ?? [])[0]) === '0',
      5_000,
      () => 'the request is still pending in the group',
    );
  });

  it('gets its replies from a raw @redis/client responder that XADDs to reply-to; the reply stream is read, emptied, and deleted at disconnect', async () => {
    const t = topic('rr-raw-responder');
    const client = await raw();
    const seen: Record<string, string>[] = [];
    // A foreign responder: XREAD the request stream from its start (it is new), answer each request on its reply-to.
    const responder = (async () => {
      let last = '0';
      while (seen.length < 3) {
        for (const [id, fields] of entriesOf(await client.sendCommand(['XREAD', 'COUNT', '10', 'BLOCK', '5000', 'STREAMS', t, last]))) {
          last = id;
          seen.push(fields);
          const { n } = JSON.parse(fields.payload ?? '') as { n: number };
          const replyTo = fields['reply-to'] ?? '';
          await client.sendCommand(['XADD', replyTo, '*', 'payload', JSON.stringify({ triple: n * 3 }), 'correlation-id', fields['correlation-id'] ?? '']);
        }
      }
    })();
    responder.catch(() => undefined);
    const requester = await open();
    const replies = await Promise.all([1, 2, 3].map((n) => requester.request<{ triple: number }>(t, { n }, { timeoutMs: 5_000 })));
    await responder;
    // No content-type on the replies: decoded with the default codec (JSON).
    expect(replies.map((r) => r.body.triple)).toEqual([3, 6, 9]);
    const replyTo = seen[0]?.['reply-to'] ?? '';
    expect(replyTo).toMatch(REPLY_KEY);
    expect(new Set(seen.map((f) => f['reply-to'])).size).toBe(1);
    expect(new Set(seen.map((f) => f['correlation-id'])).size).toBe(3);
    for (const fields of seen) expect(fields['correlation-id']).toMatch(/^[0-9a-f-]{36}$/);
    // While connected: the reply stream has an expiry, and replies read are deleted from it.
    const ttl = await client.sendCommand<number>(['TTL', replyTo]);
    expect(ttl).toBeGreaterThan(200);
    expect(ttl).toBeLessThanOrEqual(300);
    await eventually(
      async () => (await client.sendCommand<number>(['XLEN', replyTo])) === 0,
      5_000,
      () => 'replies read are still in the reply stream',
    );
    await requester.disconnect();
    expect(await client.sendCommand<number>(['EXISTS', replyTo])).toBe(0);
  });

  it('names the reply stream under keyPrefix; a responder with another prefix answers on that key as it is', async () => {
    const prefix = `ktr-app-${randomUUID().slice(0, 8)}:`;
    const t = topic('rr-prefix');
    extraKeys.add(prefix + t);
    const replyTos: string[] = [];
    // The responder has no prefix: it reads the requester's stream by its full key, and writes the reply to reply-to unchanged.
    const responder = await open();
    await responder.subscribe<string>(prefix + t, (m) => {
      replyTos.push(m.headers['reply-to'] ?? '');
      return m.body.toUpperCase();
    });
    const requester = await open({ keyPrefix: prefix });
    expect((await requester.request<string>(t, 'ping', { timeoutMs: 5_000 })).body).toBe('PING');
    expect(replyTos[0]?.startsWith(`${prefix}ktransport:reply:`)).toBe(true);
    expect(replyTos[0]?.slice(prefix.length)).toMatch(REPLY_KEY);
  });

  it('keeps the reply stream as long as the longest request may wait (its timeoutMs + 60 s)', async () => {
    const t = topic('rr-ttl');
    const replyTos: string[] = [];
    const responder = await open();
    await responder.subscribe(t, (m) => {
      replyTos.push(m.headers['reply-to'] ?? '');
      return 'ok';
    });
    const requester = await open();
    await requester.request(t, 1, { timeoutMs: 5_000 });
    const client = await raw();
    const key = replyTos[0] ?? '';
    expect(await client.sendCommand<number>(['TTL', key])).toBeLessThanOrEqual(300);
    await requester.request(t, 2, { timeoutMs: 900_000 });
    expect(await client.sendCommand<number>(['TTL', key])).toBeGreaterThan(900);
    // A stream that went away meanwhile (expired, deleted) is made again, with its expiry, by the next request that sets it.
    await client.sendCommand(['DEL', key]);
    await requester.request(t, 3, { timeoutMs: 1_000_000 });
    expect(await client.sendCommand<number>(['TTL', key])).toBeGreaterThan(1_000);
  });

  it('reports a reply-to that is not a stream (WRONGTYPE) as a WrongTypeError to onError, acknowledges the request once, and goes on answering', async () => {
    const t = topic('rr-wrongtype');
    const notAStream = topic('rr-string-key');
    const client = await raw();
    await client.sendCommand(['SET', notAStream, 'keep me']);
    const errors: unknown[] = [];
    let calls = 0;
    const responder = await open({ onError: (error) => void errors.push(error) });
    await responder.subscribe(
      t,
      () => {
        calls++;
        return 'answer';
      },
      { group: 'answerers' },
    );
    await cli(['XADD', t, '*', 'payload', '1', 'content-type', 'application/json', 'reply-to', notAStream, 'correlation-id', 'c-1']);
    await waitFor(
      () => errors.length === 1,
      5_000,
      () => `${errors.length} errors reported`,
    );
    expect(errors[0]).toBeInstanceOf(WrongTypeError);
    expect(String((errors[0] as Error).message)).toContain('WRONGTYPE');
    expect(String(await client.sendCommand(['GET', notAStream]))).toBe('keep me');
    await eventually(
      async () => String(((await client.sendCommand<unknown[]>(['XPENDING', t, 'answerers'])) ?? [])[0]) === '0',
      5_000,
      () => 'the request is still pending',
    );
    const requester = await open();
    expect((await requester.request(t, 2, { timeoutMs: 5_000 })).body).toBe('answer');
    await sleep(200);
    expect(calls).toBe(2);
    expect(errors).toHaveLength(1);
  });

  it('rejects requests in flight with a ConnectionError at disconnect, drops their late replies (no reply stream made again), and a failing responder gives a RemoteError', async () => {
    const t = topic('rr-inflight');
    const responder = await open();
    const replyTos: string[] = [];
    let answered = 0;
    await responder.subscribe<number>(t, async (m) => {
      replyTos.push(m.headers['reply-to'] ?? '');
      await sleep(300);
      answered++;
      if (m.body < 0) throw new TypeError('negative');
      return m.body;
    });
    const requester = await open();
    await expect(requester.request(t, -1, { timeoutMs: 5_000 })).rejects.toBeInstanceOf(RemoteError);
    const pending = requester.request(t, 1, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    await sleep(50);
    await requester.disconnect();
    expect(await pending).toBeInstanceOf(ConnectionError);
    // The responder answers after the requester is gone: the reply is dropped, its stream stays deleted.
    await waitFor(
      () => answered === 2,
      5_000,
      () => `${answered} answered`,
    );
    await sleep(100);
    const client = await raw();
    expect(await client.sendCommand<number>(['EXISTS', replyTos[1] ?? ''])).toBe(0);
    // A request after reconnecting has a new reply stream and gets its reply.
    await requester.connect();
    expect((await requester.request(t, 2, { timeoutMs: 5_000 })).body).toBe(2);
  });

  it('after Redis restarted without its data, the next request makes the reply stream again and gets its reply', async () => {
    const redis = await PrivateRedis.start({ persistent: false });
    try {
      const t = topic('rr-lost');
      const responder = await open({ url: redis.url, reconnectDelayMs: 50 });
      await responder.subscribe<number>(t, (m) => m.body + 1);
      const requester = await open({ url: redis.url, reconnectDelayMs: 50 });
      const seen = states(requester);
      expect((await requester.request(t, 1, { timeoutMs: 5_000 })).body).toBe(2);
      await redis.restart();
      await waitFor(
        () => seen.includes('reconnecting') && requester.state === 'connected',
        10_000,
        () => `states ${seen.join(', ')}`,
      );
      // The reply stream went with the data; the reply XADD (NOMKSTREAM) would find nothing to add to.
      expect((await requester.request(t, 2, { timeoutMs: 5_000 })).body).toBe(3);
    } finally {
      await redis.destroy();
    }
  });
});
