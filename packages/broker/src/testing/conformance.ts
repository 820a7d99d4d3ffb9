import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Broker, SubscribeOptions } from '../broker.js';
import { BrokerError } from '../errors.js';
import type { Message } from '../message.js';
import { DEAD_LETTER_HEADER } from '../middleware/dead-letter.js';
import { requestCases } from './request-cases.js';
import { publishEventually, sleep, waitFor } from './wait.js';

/** What a transport promises; a case that needs a feature the transport does not declare is not among the cases. */
export interface BrokerFeatures {
  /** MQTT-style `+` and `#` filters. */
  wildcards: boolean;
  /** Consumer groups: each group gets every message, members of a group share them. */
  groups: boolean;
  /** A group keeps messages published while none of its members is subscribed. */
  persistent: boolean;
  /** Messages with the same key arrive in publish order. */
  orderingPerKey: boolean;
  /** A message whose handler failed is delivered again. */
  redelivery: boolean;
  /**
   * Draining on disconnect still handles queued messages (an in-process broker,
   * which has nobody to hand them back to). Otherwise nothing queued starts once
   * disconnect began, and the broker keeps it for redelivery.
   */
  drainFinishesQueue?: boolean;
  /**
   * The most messages a subscription holds queued (its subscriptions report
   * `queued`, `SubscriptionLoad`), as the broker made by `createBroker` is
   * configured; enables the bounded-intake case.
   */
  intakeBound?: number;
  /**
   * Request–reply (`Requester`): round trip, concurrent requests matched to
   * their replies, timeout, a responder's error as a RemoteError, and a
   * restarted requester that never gets a reply meant for its previous life.
   */
  requestReply?: boolean;
}

/** How to make brokers for the conformance kit and which features the transport declares. */
export interface ConformanceOptions {
  /** A new, unconnected broker; each case connects and disconnects its own. */
  createBroker: () => Broker | Promise<Broker>;
  features: BrokerFeatures;
  /** Stops and starts the broker server (keeping its data); enables the restart case. */
  restartBroker?: () => Promise<void>;
  /** Called with every topic before it is used (create Kafka topics with partitions, ...). */
  prepareTopic?: (topic: string) => Promise<void>;
  /** Extra subscribe options every case passes (`fromBeginning`, `qos`, ...). */
  subscribeOptions?: Partial<SubscribeOptions> & Record<string, unknown>;
  /** How long a case waits for messages to arrive. Default 20,000 ms. */
  waitMs?: number;
}

/** One case of the conformance kit, to hand to the test runner. */
export interface ConformanceCase {
  readonly name: string;
  readonly timeoutMs: number;
  /** Runs the case; rejects when the broker does not behave as the contract says. Needs no `this`: pass it on as it is. */
  readonly run: () => Promise<void>;
}

interface Body {
  readonly n: number;
  readonly key?: string;
  readonly text?: string;
  readonly nested?: { readonly list: number[]; readonly flag: boolean };
}

/**
 * The cases every Broker must pass, framework-free: wrap each in your runner's
 * test function, e.g. `for (const c of conformanceCases(opts)) it(c.name, c.run, c.timeoutMs)`. Only the
 * cases the declared features call for are returned; a missing broker fails them, never skips them.
 */
export function conformanceCases(options: ConformanceOptions): ConformanceCase[] {
  const waitMs = options.waitMs ?? 20_000;
  const runId = randomUUID().slice(0, 8);
  let counter = 0;
  const extra = (options.subscribeOptions ?? {}) as SubscribeOptions;
  const topic = async (name: string): Promise<string> => {
    const t = `ktc-${runId}-${++counter}-${name}`;
    await options.prepareTopic?.(t);
    return t;
  };
  const open = async (): Promise<Broker> => {
    const broker = await options.createBroker();
    await broker.connect();
    return broker;
  };
  const f = options.features;
  const cases: ConformanceCase[] = [];
  const add = (name: string, run: () => Promise<void>, applies = true, timeoutMs = waitMs * 2 + 10_000): void => {
    if (applies) cases.push({ name, run, timeoutMs });
  };
  const within = (what: string) => (received: () => unknown) => () => `${what}: ${JSON.stringify(received())}`;

  add('publishes and subscribes 100 messages with bodies and headers intact', async () => {
    const broker = await open();
    try {
      const t = await topic('pubsub');
      const got: Message<Body>[] = [];
      await broker.subscribe<Body>(t, (m) => void got.push(m), extra);
      for (let n = 0; n < 100; n++) {
        await broker.publish<Body>(
          t,
          { n, text: `é ${n} ✓`, nested: { list: [n, n + 1], flag: n % 2 === 0 } },
          { headers: { 'x-n': String(n), 'x-tenant': 'acme' } },
        );
      }
      await waitFor(
        () => new Set(got.map((m) => m.body.n)).size === 100,
        waitMs,
        within('received')(() => got.length),
      );
      for (const m of got) {
        assert.equal(m.topic, t);
        assert.deepEqual(m.body, { n: m.body.n, text: `é ${m.body.n} ✓`, nested: { list: [m.body.n, m.body.n + 1], flag: m.body.n % 2 === 0 } });
        assert.equal(m.headers['x-n'], String(m.body.n));
        assert.equal(m.headers['x-tenant'], 'acme');
        assert.match(m.headers['content-type'] ?? '', /^application\/json/);
      }
    } finally {
      await broker.disconnect();
    }
  });

  add('keeps topics apart', async () => {
    const broker = await open();
    try {
      const [a, b] = [await topic('apart-a'), await topic('apart-b')];
      const gotA: number[] = [];
      const gotB: number[] = [];
      await broker.subscribe<Body>(a, (m) => void gotA.push(m.body.n), extra);
      await broker.subscribe<Body>(b, (m) => void gotB.push(m.body.n), extra);
      for (let n = 0; n < 20; n++) await broker.publish<Body>(n % 2 ? b : a, { n });
      await waitFor(
        () => gotA.length >= 10 && gotB.length >= 10,
        waitMs,
        () => `a=${gotA.length} b=${gotB.length}`,
      );
      await sleep(200);
      assert.ok(
        gotA.every((n) => n % 2 === 0),
        `topic a got odd numbers: ${gotA.join(',')}`,
      );
      assert.ok(
        gotB.every((n) => n % 2 === 1),
        `topic b got even numbers: ${gotB.join(',')}`,
      );
    } finally {
      await broker.disconnect();
    }
  });

  add(
    'matches wildcard filters + and # and shows the concrete topic',
    async () => {
      const broker = await open();
      try {
        const base = await topic('wild');
        const plus: string[] = [];
        const hash: string[] = [];
        await broker.subscribe(`${base}/+/temp`, (m) => void plus.push(m.topic), extra);
        await broker.subscribe(`${base}/#`, (m) => void hash.push(m.topic), extra);
        const topics = [`${base}/a/temp`, `${base}/b/temp`, `${base}/a/humidity`, `${base}/a/temp/raw`];
        for (const t of topics) await broker.publish(t, { t });
        await waitFor(
          () => plus.length >= 2 && hash.length >= 4,
          waitMs,
          () => `plus=${plus.join(',')} hash=${hash.join(',')}`,
        );
        await sleep(200);
        assert.deepEqual([...plus].sort(), [`${base}/a/temp`, `${base}/b/temp`]);
        assert.deepEqual([...hash].sort(), [...topics].sort());
      } finally {
        await broker.disconnect();
      }
    },
    f.wildcards,
  );

  add('loses nothing with concurrent publishers and subscribers (4 x 500 messages, 3 subscribers)', async () => {
    const broker = await open();
    try {
      const t = await topic('concurrent');
      const seen = [new Set<number>(), new Set<number>(), new Set<number>()];
      for (const s of seen) await broker.subscribe<Body>(t, (m) => void s.add(m.body.n), { ...extra, concurrency: 4 });
      const errors: unknown[] = [];
      await Promise.all(
        [0, 1, 2, 3].map(async (p) => {
          for (let i = 0; i < 500; i++) await broker.publish<Body>(t, { n: p * 500 + i }).catch((e: unknown) => errors.push(e));
        }),
      );
      assert.deepEqual(errors, []);
      await waitFor(
        () => seen.every((s) => s.size === 2000),
        waitMs * 2,
        () => `sizes ${seen.map((s) => s.size).join(',')}`,
      );
    } finally {
      await broker.disconnect();
    }
  });

  add(
    'redelivers a message whose handler threw',
    async () => {
      const broker = await open();
      try {
        const t = await topic('redeliver');
        const attempts = new Map<number, number>();
        await broker.subscribe<Body>(
          t,
          (m) => {
            const count = (attempts.get(m.body.n) ?? 0) + 1;
            attempts.set(m.body.n, count);
            if (m.body.n === 3 && count === 1) throw new Error('transient failure');
          },
          extra,
        );
        for (let n = 0; n < 6; n++) await broker.publish<Body>(t, { n });
        await waitFor(
          () => (attempts.get(3) ?? 0) >= 2 && attempts.size === 6,
          waitMs,
          () => JSON.stringify([...attempts]),
        );
      } finally {
        await broker.disconnect();
      }
    },
    f.redelivery,
  );

  add('retries, then dead-letters with the reason while other messages flow', async () => {
    const broker = await open();
    try {
      const [t, dlq] = [await topic('retry'), await topic('retry-dlq')];
      const handled: number[] = [];
      const tries = new Map<number, number>();
      const dead: Message<Body>[] = [];
      await broker.subscribe<Body>(dlq, (m) => void dead.push(m), extra);
      await broker.subscribe<Body>(
        t,
        (m) => {
          tries.set(m.body.n, (tries.get(m.body.n) ?? 0) + 1);
          if (m.body.n % 5 === 0) throw new Error(`cannot store report ${m.body.n}`);
          handled.push(m.body.n);
        },
        { ...extra, retry: { attempts: 3, initialDelayMs: 5 }, deadLetter: dlq },
      );
      for (let n = 1; n <= 20; n++) await broker.publish<Body>(t, { n }, { headers: { 'x-origin': 'conformance' } });
      await waitFor(
        () => dead.length >= 4 && new Set(handled).size === 16,
        waitMs,
        () => `dead=${dead.length} handled=${handled.length}`,
      );
      assert.deepEqual(
        dead.map((m) => m.body.n).sort((x, y) => x - y),
        [5, 10, 15, 20],
      );
      for (const m of dead) {
        assert.equal(m.headers[DEAD_LETTER_HEADER.originalTopic], t);
        assert.equal(m.headers[DEAD_LETTER_HEADER.attempts], '3');
        assert.equal(m.headers[DEAD_LETTER_HEADER.error], `cannot store report ${m.body.n}`);
        assert.equal(m.headers['x-origin'], 'conformance');
        assert.equal(tries.get(m.body.n), 3);
      }
    } finally {
      await broker.disconnect();
    }
  });

  add(
    'loses nothing across unsubscribe and a new subscription of the same group',
    async () => {
      const broker = await open();
      try {
        const t = await topic('resubscribe');
        const got = new Set<number>();
        const group = `g-${runId}-resub`;
        const first = await broker.subscribe<Body>(t, (m) => void got.add(m.body.n), { ...extra, group });
        for (let n = 0; n < 50; n++) await broker.publish<Body>(t, { n });
        await waitFor(
          () => got.size === 50,
          waitMs,
          () => `first ${got.size}`,
        );
        await first.unsubscribe();
        for (let n = 50; n < 100; n++) await broker.publish<Body>(t, { n });
        await broker.subscribe<Body>(t, (m) => void got.add(m.body.n), { ...extra, group });
        await waitFor(
          () => got.size === 100,
          waitMs,
          () => `after resubscribe ${got.size}`,
        );
      } finally {
        await broker.disconnect();
      }
    },
    f.persistent,
  );

  add(
    'keeps messages for a group that unsubscribed before anything arrived',
    async () => {
      const broker = await open();
      try {
        const t = await topic('early-unsubscribe');
        const group = `g-${runId}-early`;
        const got = new Set<number>();
        await (await broker.subscribe<Body>(t, (m) => void got.add(m.body.n), { ...extra, group })).unsubscribe();
        for (let n = 0; n < 20; n++) await broker.publish<Body>(t, { n });
        await broker.subscribe<Body>(t, (m) => void got.add(m.body.n), { ...extra, group });
        await waitFor(
          () => got.size === 20,
          waitMs,
          () => `received ${got.size}`,
        );
      } finally {
        await broker.disconnect();
      }
    },
    f.persistent,
  );

  add('closes cleanly while messages are being delivered', async () => {
    const broker = await open();
    const t = await topic('close');
    let running = 0;
    let startedAfterClose = 0;
    let closed = false;
    await broker.subscribe<Body>(
      t,
      async () => {
        if (closed) startedAfterClose++;
        running++;
        await sleep(2);
        running--;
      },
      { ...extra, concurrency: 4 },
    );
    const outcomes: unknown[] = [];
    const publishing = (async () => {
      for (let n = 0; n < 300; n++)
        outcomes.push(
          await broker.publish<Body>(t, { n }).then(
            () => 'ok',
            (e: unknown) => e,
          ),
        );
    })();
    await sleep(30);
    await broker.disconnect();
    closed = true;
    assert.equal(running, 0, 'handlers still running after disconnect resolved');
    await publishing;
    assert.equal(startedAfterClose, 0, 'a handler started after disconnect resolved');
    for (const o of outcomes) if (o !== 'ok') assert.ok(o instanceof BrokerError, `publish failed with an untyped error: ${String(o)}`);
  });

  add(
    'delivers every message to each group once, shared among its members',
    async () => {
      const broker = await open();
      try {
        const t = await topic('groups');
        const groups = [`g1-${runId}`, `g2-${runId}`].map((name) => ({ name, members: [new Set<number>(), new Set<number>()], duplicates: 0 }));
        for (const group of groups) {
          for (const member of group.members) {
            await broker.subscribe<Body>(
              t,
              (m) => {
                if (group.members.some((s) => s.has(m.body.n))) group.duplicates++;
                member.add(m.body.n);
              },
              { ...extra, group: group.name },
            );
          }
        }
        for (let n = 0; n < 200; n++) await broker.publish<Body>(t, { n }, { key: `k${n % 16}` });
        const union = (group: (typeof groups)[number]): number => new Set(group.members.flatMap((s) => [...s])).size;
        await waitFor(
          () => groups.every((group) => union(group) === 200),
          waitMs,
          () => groups.map((group, i) => `g${i + 1}=${union(group)}`).join(' '),
        );
        await sleep(300);
        assert.deepEqual(
          groups.map((group) => group.duplicates),
          [0, 0],
          'a message was handled twice within one group',
        );
        for (const group of groups) for (const m of group.members) assert.ok(m.size > 0, 'a group member received nothing');
      } finally {
        await broker.disconnect();
      }
    },
    f.groups,
  );

  /**
   * Publishes `perKey` messages under each key concurrently and checks that each
   * key's messages reach the handler in publish order; `slow` makes the handler
   * async with a random duration of up to 5 ms.
   */
  const perKeyOrder = async (name: string, keys: string[], perKey: number, concurrency: number, slow: boolean): Promise<void> => {
    const broker = await open();
    try {
      const t = await topic(name);
      const last = new Map<string, number>();
      const violations: string[] = [];
      let count = 0;
      const check = (m: Message<Body>): void => {
        const key = m.body.key;
        if (key === undefined) violations.push(`${m.body.n} arrived without its key`);
        else {
          if ((last.get(key) ?? -1) >= m.body.n) violations.push(`${key}: ${m.body.n} after ${last.get(key)}`);
          last.set(key, m.body.n);
        }
        count++;
      };
      const handler = slow ? (m: Message<Body>) => sleep(Math.random() * 5).then(() => check(m)) : check;
      await broker.subscribe<Body>(t, handler, { ...extra, concurrency });
      await Promise.all(
        keys.map(async (key) => {
          for (let n = 0; n < perKey; n++) await broker.publish<Body>(t, { n, key }, { key });
        }),
      );
      await waitFor(
        () => count >= keys.length * perKey,
        waitMs,
        () => `received ${count}`,
      );
      assert.deepEqual(violations, []);
    } finally {
      await broker.disconnect();
    }
  };

  add('keeps per-key order', () => perKeyOrder('order', ['a', 'b', 'c'], 100, 3, false), f.orderingPerKey);

  // Fewer keys than handlers: without per-key serialization, messages of one key run side by side.
  add(
    'keeps per-key order with an async handler of random duration and concurrency 4',
    () => perKeyOrder('order-async', ['a', 'b'], 60, 4, true),
    f.orderingPerKey,
  );

  add('drains on disconnect: in-flight handlers finish, nothing acknowledged early is lost', async () => {
    const t = await topic('drain');
    const group = `g-${runId}-drain`;
    const started = new Set<number>();
    const finished = new Set<number>();
    const first = await open();
    await first.subscribe<Body>(
      t,
      async (m) => {
        started.add(m.body.n);
        await sleep(150);
        finished.add(m.body.n);
      },
      { ...extra, group, concurrency: 2 },
    );
    for (let n = 0; n < 10; n++) await first.publish<Body>(t, { n });
    await waitFor(
      () => started.size >= 1,
      waitMs,
      () => 'no handler started',
    );
    await first.disconnect();
    assert.deepEqual(
      [...started].filter((n) => !finished.has(n)),
      [],
      'disconnect resolved before in-flight handlers finished',
    );
    if (f.persistent) {
      const second = await open();
      try {
        await second.subscribe<Body>(t, (m) => void finished.add(m.body.n), { ...extra, group });
        await waitFor(
          () => finished.size === 10,
          waitMs,
          () => `handled ${[...finished].join(',')}`,
        );
      } finally {
        await second.disconnect();
      }
    }
  });

  add(
    'a stuck message of one key does not hold up the other keys',
    async () => {
      const broker = await open();
      let release = (): void => undefined;
      const stuck = new Promise<void>((resolve) => (release = resolve));
      try {
        const t = await topic('stuck');
        const handled = new Map<string, number>();
        let stuckStarted = false;
        await broker.subscribe<Body>(
          t,
          async (m) => {
            if (m.body.text === 'stuck') {
              stuckStarted = true;
              await stuck;
            }
            const key = m.body.key ?? '?';
            handled.set(key, (handled.get(key) ?? 0) + 1);
          },
          { ...extra, concurrency: 4 },
        );
        await broker.publish<Body>(t, { n: 0, key: 'k0', text: 'stuck' }, { key: 'k0' });
        await waitFor(
          () => stuckStarted,
          waitMs,
          () => 'the stuck message never started',
        );
        // Published after the stuck one, under other keys (on Kafka most of them land on other partitions).
        const keys = Array.from({ length: 12 }, (_, i) => `k${i + 1}`);
        for (let n = 1; n <= 5; n++) for (const key of keys) await broker.publish<Body>(t, { n, key }, { key });
        await waitFor(
          () => keys.some((key) => handled.get(key) === 5),
          waitMs,
          () => `with k0 stuck, handled ${JSON.stringify([...handled])}`,
        );
        assert.equal(handled.get('k0'), undefined, 'the stuck message finished before it was released');
        release();
        await waitFor(
          () => handled.get('k0') === 1 && keys.every((key) => handled.get(key) === 5),
          waitMs,
          () => `after the release, handled ${JSON.stringify([...handled])}`,
        );
      } finally {
        release();
        await broker.disconnect();
      }
    },
    f.orderingPerKey,
  );

  add(
    'drain starts no queued message once disconnect began',
    async () => {
      const t = await topic('drain-queued');
      const group = `g-${runId}-drain-queued`;
      const started: number[] = [];
      let disconnecting = false;
      let startedWhileDisconnecting = 0;
      const first = await open();
      await first.subscribe<Body>(
        t,
        async (m) => {
          if (disconnecting) startedWhileDisconnecting++;
          started.push(m.body.n);
          await sleep(200);
        },
        { ...extra, group, concurrency: 1 },
      );
      for (let n = 0; n < 20; n++) await first.publish<Body>(t, { n });
      await waitFor(
        () => started.length >= 1,
        waitMs,
        () => 'no handler started',
      );
      await sleep(50);
      disconnecting = true;
      const begun = Date.now();
      await first.disconnect();
      const took = Date.now() - begun;
      assert.equal(startedWhileDisconnecting, 0, 'a queued message started after disconnect began');
      assert.ok(took < 2_000, `disconnect took ${took} ms with one 200 ms handler running`);
      if (f.persistent) {
        const second = await open();
        const rest = new Set<number>();
        try {
          await second.subscribe<Body>(t, (m) => void rest.add(m.body.n), { ...extra, group });
          await waitFor(
            () => [...Array(20).keys()].every((n) => started.includes(n) || rest.has(n)),
            waitMs,
            () => `handled ${started.join(',')} then ${[...rest].join(',')}`,
          );
        } finally {
          await second.disconnect();
        }
      }
    },
    f.drainFinishesQueue !== true,
  );

  const intakeBound = f.intakeBound;
  add(
    'bounds intake: the queue never exceeds its bound while a slow handler runs',
    async () => {
      if (intakeBound === undefined) throw new Error('the bounded-intake case needs features.intakeBound');
      const broker = await open();
      let publishing = true;
      try {
        const t = await topic('intake');
        let handled = 0;
        const subscription = await broker.subscribe<Body>(
          t,
          async () => {
            await sleep(20);
            handled++;
          },
          { ...extra, concurrency: 1 },
        );
        if (!('queued' in subscription)) throw new Error('the subscription does not report its load (SubscriptionLoad)');
        const load = subscription as unknown as { readonly queued: number };
        const total = intakeBound * 3;
        const sent = (async () => {
          for (let n = 0; n < total && publishing; n++) await broker.publish<Body>(t, { n, text: 'x'.repeat(100) });
        })();
        let most = 0;
        const until = Date.now() + Math.min(waitMs, 4_000);
        while (Date.now() < until) {
          most = Math.max(most, load.queued);
          await sleep(10);
        }
        assert.ok(most > 0, 'nothing was ever queued: the case did not load the subscription');
        assert.ok(most <= intakeBound, `the queue held ${most} messages; the bound is ${intakeBound}`);
        assert.ok(handled > 0, 'nothing was handled');
        publishing = false;
        await sent.catch(() => undefined);
      } finally {
        publishing = false;
        await broker.disconnect().catch(() => undefined);
      }
    },
    intakeBound !== undefined,
  );

  add('dead letters keep the key and the headers of the original', async () => {
    const broker = await open();
    try {
      const [t, dlq] = [await topic('dlq-key'), await topic('dlq-key-dead')];
      const dead: Message<Body>[] = [];
      await broker.subscribe<Body>(dlq, (m) => void dead.push(m), extra);
      await broker.subscribe<Body>(
        t,
        () => {
          throw new Error('refused');
        },
        { ...extra, deadLetter: dlq },
      );
      await broker.publish<Body>(t, { n: 1 }, { key: 'same-customer', headers: { tenant: 'acme', 'x-trace-note': 'kept' } });
      await waitFor(
        () => dead.length === 1,
        waitMs,
        () => 'nothing dead-lettered',
      );
      const [m] = dead;
      assert.equal(m?.key, 'same-customer');
      assert.equal(m?.headers.tenant, 'acme');
      assert.equal(m?.headers['x-trace-note'], 'kept');
      assert.equal(m?.headers[DEAD_LETTER_HEADER.error], 'refused');
      assert.deepEqual(m?.body, { n: 1 });
    } finally {
      await broker.disconnect();
    }
  });

  const restartBroker = options.restartBroker;
  add(
    'reconnects after a broker restart and loses no acknowledged message',
    async () => {
      if (restartBroker === undefined) throw new Error('the restart case needs restartBroker');
      const broker = await open();
      try {
        const t = await topic('restart');
        const got = new Set<number>();
        await broker.subscribe<Body>(t, (m) => void got.add(m.body.n), { ...extra, group: `g-${runId}-restart` });
        for (let n = 0; n < 50; n++) await broker.publish<Body>(t, { n });
        await waitFor(
          () => got.size === 50,
          waitMs,
          () => `before restart ${got.size}`,
        );
        await restartBroker();
        for (let n = 50; n < 100; n++) await publishEventually(() => broker.publish<Body>(t, { n }));
        await waitFor(
          () => got.size === 100,
          waitMs * 2,
          () => `after restart ${got.size}`,
        );
      } finally {
        await broker.disconnect();
      }
    },
    restartBroker !== undefined,
  );

  if (f.requestReply === true) requestCases({ open, topic, add: (name, run) => add(name, run), extra, waitMs });

  return cases;
}
