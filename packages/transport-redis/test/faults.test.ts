import { spawn } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConnectionState } from '@ktransport/broker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, open, raw, sleep, topic, waitFor } from './helpers.js';
import { PrivateRedis, SHARED_URL } from './redis.js';

const HERE = import.meta.dirname;

let redis: PrivateRedis;
beforeAll(async () => {
  // AOF with appendfsync always: every XADD Redis confirmed is on disk before the answer, even across a SIGKILL.
  redis = await PrivateRedis.start({ persistent: true });
});
afterAll(async () => {
  await redis?.destroy();
});

describe('faults', () => {
  it('loses no acknowledged publish when Redis is killed and started again mid-stream', async () => {
    const t = topic('restart');
    const total = 3_000;
    const received = new Set<number>();
    const states: ConnectionState[] = [];
    const subscriber = await open({ url: redis.url, reconnectDelayMs: 50, claimIdleMs: 1_000 });
    subscriber.onStateChange((s) => void states.push(s));
    await subscriber.subscribe<{ n: number }>(t, (m) => void received.add(m.body.n), { group: 'g', concurrency: 8 });
    const publisher = await open({ url: redis.url, reconnectDelayMs: 50, publishTimeoutMs: 2_000 });
    const acknowledged = new Set<number>();
    let next = 0;
    let retries = 0;
    const worker = async (): Promise<void> => {
      while (next < total) {
        const n = next++;
        for (let attempt = 1; ; attempt++) {
          try {
            await publisher.publish(t, { n });
            acknowledged.add(n);
            break;
          } catch (error) {
            if (attempt >= 300) throw error;
            retries++;
            await sleep(20);
          }
        }
      }
    };
    const publishing = Promise.all(Array.from({ length: 8 }, worker));
    await waitFor(
      () => next >= total / 3,
      30_000,
      () => `published ${next}`,
    );
    await redis.kill();
    await sleep(300);
    await redis.start();
    await publishing;
    await waitFor(
      () => [...acknowledged].every((n) => received.has(n)),
      30_000,
      () => `received ${received.size} of ${acknowledged.size} acknowledged`,
    );
    expect(acknowledged.size).toBe(total);
    expect(retries).toBeGreaterThan(0);
    expect(states).toContain('reconnecting');
    expect(subscriber.state).toBe('connected');
  }, 90_000);

  it('a group member killed with SIGKILL: the entries it held are claimed by another member after claimIdleMs', async () => {
    const sources = (await readdir(join(HERE, '../src'))).filter((f) => f.endsWith('.ts'));
    const stale: string[] = [];
    for (const file of sources) {
      const [src, dist] = await Promise.all([
        stat(join(HERE, '../src', file)),
        stat(join(HERE, '../dist', file.replace(/\.ts$/, '.js'))).catch(() => undefined),
      ]);
      if (!dist || dist.mtimeMs < src.mtimeMs) stale.push(file);
    }
    expect(stale, 'the child process runs the built package: run `tsc -b packages/transport-redis` (scripts/test.sh builds first)').toEqual([]);
    const t = topic('killed');
    const child = spawn(process.execPath, [join(HERE, 'member-child.mjs'), SHARED_URL, t, 'g'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      const broker = await open({ claimIdleMs: 1_000 });
      await waitFor(
        () => output.includes('ready'),
        15_000,
        () => `the child did not subscribe: ${output}`,
      );
      for (let n = 0; n < 20; n++) await broker.publish(t, { n });
      await waitFor(
        () => (output.match(/^got /gm) ?? []).length >= 5,
        10_000,
        () => `the child took ${output}`,
      );
      const held = [...output.matchAll(/^got (\d+)$/gm)].map((m) => Number(m[1]));
      child.kill('SIGKILL');
      await exited;
      const handled = new Set<number>();
      await broker.subscribe<{ n: number }>(t, (m) => void handled.add(m.body.n), { group: 'g' });
      await waitFor(
        () => handled.size === 20,
        15_000,
        () => `handled ${[...handled].sort((a, b) => a - b).join(',')}`,
      );
      expect(held.every((n) => handled.has(n))).toBe(true);
      // Everything the dead member held was claimed and acknowledged: nothing is stranded.
      const client = await raw();
      await eventually(
        async () => ((await client.sendCommand<unknown[]>(['XPENDING', t, 'g'])) as [number])[0] === 0,
        5_000,
        () => 'entries still pending',
      );
    } finally {
      child.kill('SIGKILL');
    }
  }, 60_000);
});
