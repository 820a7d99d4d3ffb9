import { describe, expect, it } from 'vitest';
import { type Consumer, type Delivery, DeliveryEngine, type FlowControl, type RawMessage } from '@ktransport/broker/transport';
import { sleep, waitFor } from '@ktransport/broker/testing';

/** A delivery that records how it ended. */
function delivery(n: number, key?: string): Delivery & { outcome: 'ack' | 'nack' | undefined; readonly n: number } {
  const message: RawMessage = { topic: 't', body: new Uint8Array([n & 0xff]), headers: { n: String(n) } };
  const d = {
    n,
    message,
    orderingKey: key,
    outcome: undefined as 'ack' | 'nack' | undefined,
    ack() {
      if (d.outcome) throw new Error(`delivery ${n} settled twice`);
      d.outcome = 'ack';
    },
    nack() {
      if (d.outcome) throw new Error(`delivery ${n} settled twice`);
      d.outcome = 'nack';
    },
  };
  return d;
}

const numberOf = (message: RawMessage): number => Number(message.headers.n);

describe('DeliveryEngine', () => {
  it('keeps per-key order with concurrency > 1 and handlers of random duration, and runs keys in parallel', async () => {
    const seen = new Map<string, number[]>();
    let running = 0;
    let most = 0;
    const consumer: Consumer = async (message) => {
      running++;
      most = Math.max(most, running);
      await sleep(Math.random() * 4);
      const key = message.headers.key ?? 'none';
      seen.set(key, [...(seen.get(key) ?? []), numberOf(message)]);
      running--;
    };
    const engine = new DeliveryEngine({ consumer, concurrency: 3, maxQueued: 1_000, redeliveryDelayMs: 1 });
    const all: ReturnType<typeof delivery>[] = [];
    for (let n = 0; n < 300; n++) {
      const key = `k${n % 5}`;
      const d = delivery(n, key);
      (d.message.headers as Record<string, string>).key = key;
      all.push(d);
      engine.push(d);
    }
    await waitFor(
      () => all.every((d) => d.outcome === 'ack'),
      10_000,
      () => `${all.filter((d) => d.outcome).length} settled`,
    );
    for (const [key, order] of seen) expect(order, key).toEqual([...order].sort((a, b) => a - b));
    expect(most).toBe(3);
  });

  it('never lets a stuck key delay another key', async () => {
    let release!: () => void;
    const stuck = new Promise<void>((r) => (release = r));
    const order: number[] = [];
    const engine = new DeliveryEngine({
      consumer: async (message) => {
        if (numberOf(message) === 0) await stuck;
        order.push(numberOf(message));
      },
      concurrency: 2,
      maxQueued: 100,
      redeliveryDelayMs: 1,
    });
    engine.push(delivery(0, 'a'));
    engine.push(delivery(1, 'a'));
    for (let n = 2; n < 12; n++) engine.push(delivery(n, 'b'));
    await waitFor(
      () => order.length === 10,
      2_000,
      () => order.join(),
    );
    expect(order).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    release();
    await waitFor(
      () => order.length === 12,
      2_000,
      () => order.join(),
    );
    expect(order.slice(10)).toEqual([0, 1]);
  });

  it('runs a failed delivery again after the delay, before anything newer of its key, and acks it only then', async () => {
    let failures = 1;
    const order: number[] = [];
    const engine = new DeliveryEngine({
      consumer: (message) => {
        if (numberOf(message) === 0 && failures-- > 0) return Promise.reject(new Error('flaky'));
        order.push(numberOf(message));
        return Promise.resolve();
      },
      concurrency: 4,
      maxQueued: 100,
      redeliveryDelayMs: 30,
    });
    const first = delivery(0, 'k');
    const second = delivery(1, 'k');
    engine.push(first);
    engine.push(second);
    await sleep(10);
    expect(first.outcome).toBeUndefined();
    expect(order).toEqual([]);
    await waitFor(
      () => second.outcome === 'ack',
      2_000,
      () => order.join(),
    );
    expect(order).toEqual([0, 1]);
    expect(first.outcome).toBe('ack');
  });

  it('stop starts nothing queued: queued deliveries are nacked at once, running ones finish', async () => {
    const started: number[] = [];
    const engine = new DeliveryEngine({
      consumer: async (message) => {
        started.push(numberOf(message));
        await sleep(100);
      },
      concurrency: 1,
      maxQueued: 100,
      redeliveryDelayMs: 1,
    });
    const all = Array.from({ length: 20 }, (_, n) => delivery(n));
    for (const d of all) engine.push(d);
    const begun = Date.now();
    const result = await engine.stop(5_000);
    expect(Date.now() - begun).toBeLessThan(1_000);
    expect(result).toEqual({ running: 0, queued: 19 });
    expect(started).toEqual([0]);
    expect(all[0]?.outcome).toBe('ack');
    expect(all.slice(1).every((d) => d.outcome === 'nack')).toBe(true);
    const late = delivery(99);
    engine.push(late);
    expect(late.outcome).toBe('nack');
  });

  it('stop reports handlers still running when its time runs out, and aborts their signal', async () => {
    let aborted = false;
    const engine = new DeliveryEngine({
      consumer: (_message, signal) =>
        new Promise<void>((resolve) => {
          signal.addEventListener('abort', () => {
            aborted = true;
            resolve();
          });
        }),
      concurrency: 2,
      maxQueued: 100,
      redeliveryDelayMs: 1,
    });
    const all = Array.from({ length: 5 }, (_, n) => delivery(n));
    for (const d of all) engine.push(d);
    expect(await engine.stop(50)).toEqual({ running: 2, queued: 3 });
    expect(aborted).toBe(true);
    // The two handlers resolved after the abort: reported as not acknowledged, they are nacked, not acked.
    await waitFor(
      () => all.every((d) => d.outcome !== undefined),
      1_000,
      () => 'unsettled',
    );
    expect(all.map((d) => d.outcome)).toEqual(['nack', 'nack', 'nack', 'nack', 'nack']);
  });

  it('a finish waiting for a redelivery ends as soon as stop gives that delivery up', async () => {
    const engine = new DeliveryEngine({ consumer: () => Promise.reject(new Error('down')), concurrency: 1, redeliveryDelayMs: 60_000 });
    const d = delivery(1);
    engine.push(d);
    await sleep(10);
    const finishing = engine.finish(60_000);
    const begun = Date.now();
    await engine.stop(1_000);
    expect(await finishing).toEqual({ running: 0, queued: 0 });
    expect(Date.now() - begun).toBeLessThan(1_000);
    expect(d.outcome).toBe('nack');
  });

  it('finish (unsubscribe) still handles what was queued, and takes nothing new', async () => {
    const handled: number[] = [];
    const engine = new DeliveryEngine({
      consumer: async (message) => {
        await sleep(2);
        handled.push(numberOf(message));
      },
      concurrency: 1,
      maxQueued: 100,
      redeliveryDelayMs: 1,
    });
    for (let n = 0; n < 10; n++) engine.push(delivery(n));
    const finishing = engine.finish(5_000);
    const late = delivery(10);
    engine.push(late);
    expect(await finishing).toEqual({ running: 0, queued: 0 });
    expect(handled).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(late.outcome).toBe('nack');
  });

  it('pauses intake when maxQueued deliveries wait and resumes at half', async () => {
    const events: string[] = [];
    const flow: FlowControl = { perKey: false, pause: () => events.push('pause'), resume: () => events.push('resume') };
    let release!: () => void;
    let gate = new Promise<void>((r) => (release = r));
    const engine = new DeliveryEngine({ consumer: () => gate, concurrency: 1, maxQueued: 4, redeliveryDelayMs: 1, flow });
    for (let n = 0; n < 5; n++) engine.push(delivery(n));
    expect(engine.queued).toBe(4);
    expect(events).toEqual(['pause']);
    for (let i = 0; i < 2; i++) {
      release();
      gate = new Promise<void>((r) => (release = r));
      await sleep(5);
    }
    expect(engine.queued).toBe(2);
    expect(events).toEqual(['pause', 'resume']);
    await engine.stop(0);
  });

  it('pauses and resumes single keys when the wire does it per key (Kafka partitions)', async () => {
    const events: string[] = [];
    const flow: FlowControl = { perKey: true, pause: (k) => events.push(`pause ${k}`), resume: (k) => events.push(`resume ${k}`) };
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const engine = new DeliveryEngine({
      consumer: (message) => (message.headers.n === '0' ? gate : Promise.resolve()),
      concurrency: 2,
      maxQueued: 3,
      redeliveryDelayMs: 1,
      flow,
    });
    for (let n = 0; n < 5; n++) engine.push(delivery(n, 'p0'));
    const other = Array.from({ length: 10 }, (_, n) => delivery(100 + n, 'p1'));
    for (const d of other) engine.push(d);
    await waitFor(
      () => other.every((d) => d.outcome === 'ack'),
      2_000,
      () => 'p1 not handled',
    );
    // p1 flowed (pausing and resuming on its own) while p0 stayed paused behind its stuck delivery.
    expect(events.filter((e) => e.endsWith('p0'))).toEqual(['pause p0']);
    expect(events.at(-1)).toBe('resume p1');
    release();
    await waitFor(
      () => engine.queued === 0,
      2_000,
      () => `${engine.queued} queued`,
    );
    expect(events.filter((e) => e.endsWith('p0'))).toEqual(['pause p0', 'resume p0']);
  });

  it('revoke nacks the queued deliveries of the keys taken away and leaves the others', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const engine = new DeliveryEngine({ consumer: () => gate, concurrency: 2, maxQueued: 100, redeliveryDelayMs: 1 });
    const a = [delivery(0, 'a'), delivery(1, 'a'), delivery(2, 'a')];
    const b = [delivery(3, 'b'), delivery(4, 'b')];
    for (const d of [...a, ...b]) engine.push(d);
    expect(engine.revoke((key) => key === 'a')).toBe(2);
    expect(a.map((d) => d.outcome)).toEqual([undefined, 'nack', 'nack']);
    release();
    await waitFor(
      () => b.every((d) => d.outcome === 'ack'),
      2_000,
      () => 'b not handled',
    );
    expect(a[0]?.outcome).toBe('ack');
  });

  it('a delivery backing off between retries gives its slot to other keys and gets one back after', async () => {
    const order: string[] = [];
    let failures = 1;
    const engine = new DeliveryEngine({
      consumer: async (message, _signal, yieldSlot) => {
        const n = numberOf(message);
        if (n === 0 && failures-- > 0) {
          order.push('0 failed');
          if (!yieldSlot) throw new Error('the engine gave no yieldSlot');
          await yieldSlot(sleep(100));
        }
        order.push(String(n));
      },
      concurrency: 1,
      redeliveryDelayMs: 1,
    });
    const all = [delivery(0, 'a'), delivery(1, 'a'), delivery(2, 'b'), delivery(3, 'b')];
    for (const d of all) engine.push(d);
    await waitFor(
      () => all.every((d) => d.outcome === 'ack'),
      2_000,
      () => order.join(),
    );
    // b ran while a's first message backed off; a's second waited for its key.
    expect(order).toEqual(['0 failed', '2', '3', '0', '1']);
  });

  it('stop wakes a delivery backing off: it gets no slot, is not tried again, and is nacked', async () => {
    let tries = 0;
    const engine = new DeliveryEngine({
      consumer: async (_message, _signal, yieldSlot) => {
        tries++;
        await yieldSlot?.(sleep(60_000));
        tries++;
      },
      concurrency: 1,
      redeliveryDelayMs: 1,
    });
    const d = delivery(0);
    engine.push(d);
    await sleep(10);
    const begun = Date.now();
    expect(await engine.stop(5_000)).toEqual({ running: 0, queued: 0 });
    expect(Date.now() - begun).toBeLessThan(1_000);
    expect(tries).toBe(1);
    expect(d.outcome).toBe('nack');
  });
});
