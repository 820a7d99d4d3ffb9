import type { Message } from '@ktransport/broker';
import type { ConsumeMessage } from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';
import { type Child, runChild } from './child.js';
import { cleanUp, open, SHARED_URL, unique, waitFor } from './helpers.js';

const children: Child[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill();
});

describe('a group member killed with SIGKILL', () => {
  it('its unacknowledged messages are delivered again to another member of the group', async () => {
    const t = unique('kill');
    const group = unique('g');
    cleanUp({ queues: [`${group}:${t}`] });
    const broker = await open();
    // The child subscribes first and takes the first messages (prefetch 5, never acknowledged).
    const child = await runChild('consumer-child.ts', [SHARED_URL, t, group]);
    children.push(child);
    await child.line((l) => l === 'ready', 30_000);
    for (let n = 0; n < 5; n++) await broker.publish(t, { n });
    await waitFor(
      () => child.lines.filter((l) => l.startsWith('got ')).length === 5,
      10_000,
      () => `the child got ${child.lines.join(',')}`,
    );
    const held = child.lines.filter((l) => l.startsWith('got ')).map((l) => Number(l.slice(4)));

    const got: Message<{ n: number }>[] = [];
    await broker.subscribe<{ n: number }>(t, (m) => void got.push(m), { group });
    for (let n = 5; n < 10; n++) await broker.publish(t, { n });
    // Nothing the child holds comes to the other member while it lives.
    await waitFor(
      () => got.length === 5,
      10_000,
      () => `the other member got ${got.map((m) => m.body.n).join(',')}`,
    );
    expect(got.map((m) => m.body.n).sort((a, b) => a - b)).toEqual([5, 6, 7, 8, 9]);

    child.kill();
    await waitFor(
      () => got.length === 10,
      15_000,
      () => `after the kill the other member got ${got.map((m) => m.body.n).join(',')}`,
    );
    const again = got.slice(5);
    expect(again.map((m) => m.body.n).sort((a, b) => a - b)).toEqual(held.sort((a, b) => a - b));
    for (const m of again) expect((m.raw as ConsumeMessage).fields.redelivered).toBe(true);
  }, 60_000);
});
