import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerError, type ConnectionState, isRetriable } from '@ktransport/broker';
import { sleep, waitFor } from '@ktransport/broker/testing';
import { NatsBroker } from '@ktransport/transport-nats';
import { type Admin, admin, ensureNats, fast, NATS_URL, unique } from './helpers.js';
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
    const broker = new NatsBroker({ ...fast, url: nats.url, publishTimeoutMs: 2_000 });
    const states: ConnectionState[] = [];
    broker.onStateChange((s) => states.push(s));
    await broker.connect();
    try {
      const consumed = new Set<number>();
      await broker.subscribe<{ n: number }>(topic, (m) => void consumed.add(m.body.n), { group: unique('g'), concurrency: 4 });
      const publishing = publishAll(broker, topic, 3_000, 4);
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
      expect(acked.size).toBe(3_000);
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

  it('a group member killed with SIGKILL: the messages it held are delivered to another member after ack_wait', async () => {
    const built = join(HERE, '../dist/index.js');
    const fresh = await Promise.all([stat(built), stat(join(HERE, '../src/member.ts'))]).then(
      ([dist, src]) => dist.mtimeMs >= src.mtimeMs,
      () => false,
    );
    expect(fresh, 'the child process runs the built package: run `tsc -b packages/transport-nats` (scripts/test.sh builds first)').toBe(true);
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
