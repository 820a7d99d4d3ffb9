import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerError, type ConnectionState, isRetriable } from '@ktransport/broker';
import { sleep, waitFor } from '@ktransport/broker/testing';
import { NatsBroker } from '@ktransport/transport-nats';
import { type Admin, admin, ensureNats, fast, NATS_URL, publishRetrying, unique, waitForAsync } from './helpers.js';
import { PrivateNats } from './servers.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** A server of this file's own, stopped and started by the restart case. */
const nats = new PrivateNats();
let privateAdmin: Admin;
let machineAdmin: Admin;

beforeAll(async () => {
  await ensureNats();
  await nats.start();
  privateAdmin = await admin(nats.url);
  machineAdmin = await admin();
}, 30_000);

afterAll(async () => {
  await privateAdmin?.close().catch(() => undefined);
  await machineAdmin?.close();
  await nats.remove();
}, 30_000);

/**
 * Publishes 0..count-1 with `broker`, each repeated while it fails with a
 * retriable error (with the same msgId, so that a PubAck lost in the outage
 * cannot store it twice); returns the numbers acknowledged and the errors seen.
 */
async function publishAll(broker: NatsBroker, topic: string, count: number, publishers: number): Promise<{ acked: Set<number>; errors: unknown[] }> {
  const acked = new Set<number>();
  const errors: unknown[] = [];
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < count) {
      const n = next++;
      for (let attempt = 0; attempt < 200; attempt++) {
        const error = await broker.publish(topic, { n }, { msgId: `${topic}-${n}` }).then(
          () => undefined,
          (e: unknown) => e,
        );
        if (error === undefined) {
          acked.add(n);
          break;
        }
        errors.push(error);
        if (!isRetriable(error)) break;
        await sleep(100);
      }
    }
  };
  await Promise.all(Array.from({ length: publishers }, one));
  return { acked, errors };
}

describe('NatsBroker faults', () => {
  it('a server restart in the middle of a stream: publishers see success or a typed error, every acknowledged message is consumed', async () => {
    const topic = unique('restart');
    await privateAdmin.stream(topic);
    // Messages on their way when the connection broke come back after ack_wait: a short one keeps the case short.
    const broker = new NatsBroker({ ...fast, url: nats.url, publishTimeoutMs: 2_000, ackWaitMs: 2_000 });
    const states: ConnectionState[] = [];
    broker.onStateChange((s) => states.push(s));
    await broker.connect();
    try {
      const consumed = new Set<number>();
      await broker.subscribe<{ n: number }>(topic, (m) => void consumed.add(m.body.n), { group: unique('g'), concurrency: 4 });
      const publishing = publishAll(broker, topic, 2_000, 4);
      await waitFor(
        () => consumed.size >= 300,
        20_000,
        () => `consumed ${consumed.size} before the restart`,
      );
      await nats.stop();
      await sleep(1_500);
      await nats.start();
      const { acked, errors } = await publishing;
      expect(errors.filter((e) => !(e instanceof BrokerError))).toEqual([]);
      expect(errors.filter((e) => !isRetriable(e))).toEqual([]);
      expect(acked.size).toBe(2_000);
      await waitFor(
        () => [...acked].every((n) => consumed.has(n)),
        30_000,
        () => `unconsumed ${[...acked].filter((n) => !consumed.has(n)).length} of ${acked.size}`,
      );
      expect(states).toContain('reconnecting');
      expect(broker.state).toBe('connected');
    } finally {
      await broker.disconnect();
    }
  }, 60_000);

  it('a consumer deleted under a subscription (by an operator, or lost with a server) is made again: a group resumes, a subscription without a group goes on from the next sequence', async () => {
    const topic = unique('deleted');
    const stream = await privateAdmin.stream(topic);
    const broker = new NatsBroker({ ...fast, url: nats.url });
    await broker.connect();
    try {
      const grouped = new Set<number>();
      const plain = new Set<number>();
      await broker.subscribe<{ n: number }>(topic, (m) => void grouped.add(m.body.n), { group: unique('g') });
      await broker.subscribe<{ n: number }>(topic, (m) => void plain.add(m.body.n));
      for (let n = 0; n < 10; n++) await broker.publish(topic, { n });
      await waitFor(
        () => grouped.size === 10 && plain.size === 10,
        10_000,
        () => `grouped ${grouped.size} plain ${plain.size}`,
      );
      const names: string[] = [];
      for await (const c of privateAdmin.jsm.consumers.list(stream)) names.push(c.name);
      expect(names).toHaveLength(2);
      for (const name of names) {
        // nats-server 2.9 may fail a delete racing with the consumer's own store writes ("directory not empty"): tried again.
        for (let attempt = 0; ; attempt++) {
          const error = await privateAdmin.jsm.consumers.delete(stream, name).then(
            () => undefined,
            (e: unknown) => e,
          );
          if (error === undefined || (error instanceof Error && /not found/i.test(error.message))) break;
          if (attempt > 20) throw error instanceof Error ? error : new Error('delete failed');
          await sleep(100);
        }
      }
      for (let n = 10; n < 20; n++) await broker.publish(topic, { n });
      await waitFor(
        () => grouped.size === 20 && plain.size === 20,
        15_000,
        () => `grouped ${grouped.size} plain ${plain.size}`,
      );
      const again: string[] = [];
      for await (const c of privateAdmin.jsm.consumers.list(stream)) again.push(c.name);
      expect(again.sort()).toEqual(names.sort());
    } finally {
      await broker.disconnect();
    }
  }, 40_000);

  it('a memory stream lost with a server restart is created again on reconnect, and the subscriptions go on in it', async () => {
    const topic = unique('memory');
    const name = unique('MEM');
    const broker = new NatsBroker({ ...fast, url: nats.url, ackWaitMs: 2_000, streams: [{ name, subjects: [topic], storage: 'memory' }] });
    await broker.connect();
    try {
      const grouped = new Set<number>();
      const plain = new Set<number>();
      await broker.subscribe<{ n: number }>(topic, (m) => void grouped.add(m.body.n), { group: unique('g'), deliverPolicy: 'all' });
      await broker.subscribe<{ n: number }>(topic, (m) => void plain.add(m.body.n));
      for (let n = 0; n < 5; n++) await broker.publish(topic, { n });
      await waitFor(
        () => grouped.size === 5 && plain.size === 5,
        10_000,
        () => `grouped ${grouped.size} plain ${plain.size}`,
      );
      await nats.restart();
      await waitForAsync(
        () =>
          privateAdmin.jsm.streams.info(name).then(
            () => true,
            () => false,
          ),
        10_000,
        () => `stream ${name} not made again`,
      );
      for (let n = 5; n < 10; n++) await publishRetrying(() => broker.publish(topic, { n }));
      await waitFor(
        () => grouped.size === 10 && plain.size === 10,
        15_000,
        () => `grouped ${grouped.size} plain ${plain.size}`,
      );
    } finally {
      await broker.disconnect();
      await privateAdmin.jsm.streams.delete(name).catch(() => undefined);
    }
  }, 40_000);

  it('a subscription without a group across a server restart: nothing published meanwhile is missed', async () => {
    const topic = unique('plain-restart');
    await privateAdmin.stream(topic);
    const broker = new NatsBroker({ ...fast, url: nats.url, ackWaitMs: 2_000 });
    await broker.connect();
    try {
      const got = new Set<number>();
      await broker.subscribe<{ n: number }>(topic, (m) => void got.add(m.body.n));
      for (let n = 0; n < 10; n++) await broker.publish(topic, { n });
      await nats.restart();
      for (let n = 10; n < 20; n++) await publishRetrying(() => broker.publish(topic, { n }, { msgId: `${topic}-${n}` }));
      await waitFor(
        () => got.size === 20,
        15_000,
        () => `got ${[...got].sort((a, b) => a - b).join(',')}`,
      );
    } finally {
      await broker.disconnect();
    }
  }, 40_000);

  it('a group member killed with SIGKILL: the messages it held are delivered to another member after ack_wait', async () => {
    // The child runs the built package (scripts/test.sh builds first; a separate Node process cannot load the sources).
    const built = await stat(join(HERE, '../dist/index.js')).then(
      () => true,
      () => false,
    );
    expect(built, 'packages/transport-nats/dist is missing: run `tsc -b packages/transport-nats`').toBe(true);
    const topic = unique('killed');
    await machineAdmin.stream(topic);
    const group = unique('g');
    const child = spawn(process.execPath, [join(HERE, 'member-child.mjs'), NATS_URL, topic, group], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const broker = new NatsBroker({ ...fast });
    await broker.connect();
    try {
      await waitFor(
        () => output.includes('ready'),
        15_000,
        () => `the child did not subscribe: ${output}`,
      );
      for (let n = 0; n < 20; n++) await broker.publish(topic, { n });
      await waitFor(
        () => (output.match(/^got /gm) ?? []).length >= 5,
        10_000,
        () => `the child took ${output}`,
      );
      const held = [...output.matchAll(/^got (\d+)$/gm)].map((m) => Number(m[1]));
      child.kill('SIGKILL');
      await exited;
      const handled = new Set<number>();
      await broker.subscribe<{ n: number }>(topic, (m) => void handled.add(m.body.n), { group });
      await waitFor(
        () => handled.size === 20,
        15_000,
        () => `handled ${[...handled].sort((a, b) => a - b).join(',')}`,
      );
      expect(held.every((n) => handled.has(n))).toBe(true);
    } finally {
      child.kill('SIGKILL');
      await broker.disconnect();
    }
  }, 60_000);
});
