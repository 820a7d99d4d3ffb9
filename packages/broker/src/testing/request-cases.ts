import assert from 'node:assert/strict';
import type { Broker, Requester, SubscribeOptions } from '../broker.js';
import { supportsRequest } from '../broker.js';
import { ConnectionError, RemoteError, TimeoutError } from '../errors.js';
import { sleep } from './wait.js';

/** What the request–reply cases need from the kit. */
export interface RequestCaseKit {
  readonly open: () => Promise<Broker>;
  readonly topic: (name: string) => Promise<string>;
  readonly add: (name: string, run: () => Promise<void>) => void;
  readonly extra: SubscribeOptions;
  readonly waitMs: number;
}

interface Question {
  readonly n: number;
}

interface Answer {
  readonly n: number;
  readonly square: number;
  readonly round?: string;
}

function requester(broker: Broker): Broker & Requester {
  if (!supportsRequest(broker)) throw new Error(`the ${broker.system} broker declares requestReply but has no request()`);
  return broker;
}

/** The request–reply cases (feature `requestReply`). */
export function requestCases({ open, topic, add, extra, waitMs }: RequestCaseKit): void {
  add('request–reply: a request resolves with the handler’s return value, headers kept', async () => {
    const broker = requester(await open());
    try {
      const t = await topic('rr-roundtrip');
      const seen: Record<string, string>[] = [];
      await broker.subscribe<Question>(
        t,
        (m): Answer => {
          seen.push(m.headers);
          return { n: m.body.n, square: m.body.n * m.body.n };
        },
        extra,
      );
      const reply = await broker.request<Answer>(t, { n: 7 }, { timeoutMs: waitMs, headers: { 'x-tenant': 'acme' } });
      assert.deepEqual(reply.body, { n: 7, square: 49 });
      assert.match(reply.headers['content-type'] ?? '', /^application\/json/);
      assert.equal(seen[0]?.['x-tenant'], 'acme');
      // A fire-and-forget publish to the same handler is not answered and does not fail.
      await broker.publish<Question>(t, { n: 8 });
    } finally {
      await broker.disconnect();
    }
  });

  add('request–reply: 50 concurrent requests each get their own reply', async () => {
    const broker = requester(await open());
    try {
      const t = await topic('rr-concurrent');
      // Replies come back out of order: later requests are answered sooner.
      await broker.subscribe<Question>(
        t,
        async (m): Promise<Answer> => {
          await sleep((50 - m.body.n) % 7);
          return { n: m.body.n, square: m.body.n * m.body.n };
        },
        { ...extra, concurrency: 8 },
      );
      const replies = await Promise.all([...Array(50).keys()].map((n) => broker.request<Answer>(t, { n }, { timeoutMs: waitMs })));
      replies.forEach((reply, n) => assert.deepEqual(reply.body, { n, square: n * n }));
    } finally {
      await broker.disconnect();
    }
  });

  add('request–reply: no reply within timeoutMs rejects with a TimeoutError', async () => {
    const broker = requester(await open());
    try {
      const t = await topic('rr-timeout');
      // A handler that answers nothing, and a topic nobody serves.
      await broker.subscribe<Question>(t, () => undefined, extra);
      const began = Date.now();
      await assert.rejects(broker.request(t, { n: 1 }, { timeoutMs: 300 }), TimeoutError);
      const took = Date.now() - began;
      assert.ok(took >= 290 && took < 3_000, `timed out after ${took} ms, asked for 300 ms`);
      await assert.rejects(broker.request(await topic('rr-nobody'), { n: 2 }, { timeoutMs: 300 }), TimeoutError);
    } finally {
      await broker.disconnect();
    }
  });

  add('request–reply: a failing responder rejects with a RemoteError (type and message, no stack)', async () => {
    const broker = requester(await open());
    try {
      const t = await topic('rr-error');
      let calls = 0;
      await broker.subscribe<Question>(
        t,
        (m) => {
          calls++;
          throw new RangeError(`no square for ${m.body.n}\nsecond line`);
        },
        { ...extra, retry: { attempts: 2, initialDelayMs: 5 } },
      );
      const error = await broker.request(t, { n: 3 }, { timeoutMs: waitMs }).then(
        () => assert.fail('the request resolved'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof RemoteError, `rejected with ${String(error)}`);
      assert.equal(error.errorType, 'RangeError');
      assert.equal(error.remoteMessage, 'no square for 3\\u000asecond line');
      assert.doesNotMatch(error.message, /\bat .*\(.*:\d+:\d+\)/);
      assert.equal(calls, 2, 'the retry policy runs before the error reply');
      // Answered, so neither redelivered nor answered twice.
      await sleep(200);
      assert.equal(calls, 2);
    } finally {
      await broker.disconnect();
    }
  });

  add('request–reply: a restarted requester never gets a reply meant for its previous life', async () => {
    const responder = requester(await open());
    const t = await topic('rr-restart');
    try {
      await responder.subscribe<Question & { round: string }>(
        t,
        async (m): Promise<Answer> => {
          await sleep(150);
          return { n: m.body.n, square: m.body.n * m.body.n, round: m.body.round };
        },
        { ...extra, concurrency: 20 },
      );
      // First life: requests in flight when the requester goes away.
      const first = [...Array(10).keys()].map((n) => responder.request<Answer>(t, { n, round: 'first' }, { timeoutMs: waitMs }));
      const outcomes = Promise.allSettled(first);
      await sleep(50);
      await responder.disconnect();
      for (const outcome of await outcomes) {
        assert.equal(outcome.status, 'rejected', 'a request of the first life resolved after its requester disconnected');
        assert.ok(outcome.reason instanceof ConnectionError, `rejected with ${String(outcome.reason)}`);
      }
      // Second life, same numbers: each gets the reply to its own request, never a late one of the first life.
      await responder.connect();
      await responder.subscribe<Question & { round: string }>(
        t,
        async (m): Promise<Answer> => {
          await sleep(m.body.n * 5);
          return { n: m.body.n, square: m.body.n * m.body.n, round: m.body.round };
        },
        { ...extra, concurrency: 20 },
      );
      const second = await Promise.all([...Array(10).keys()].map((n) => responder.request<Answer>(t, { n, round: 'second' }, { timeoutMs: waitMs })));
      second.forEach((reply, n) => assert.deepEqual(reply.body, { n, square: n * n, round: 'second' }));
    } finally {
      await responder.disconnect();
    }
  });
}
