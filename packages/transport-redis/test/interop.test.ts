import 'reflect-metadata';
import { App, jsonCodec, type Message, msgpackCodec, Subscribe } from '@ktransport/broker';
import { RedisServer } from '@ktransport/transport-redis';
import { Container, injectable } from 'inversify';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { open, topic, waitFor } from './helpers.js';
import { cli, SHARED_URL } from './redis.js';

const REPORTS = topic('reports');
const Report = z.object({ agent: z.string(), cpu: z.number().min(0).max(100), tags: z.array(z.string()).default([]) });
type Report = z.infer<typeof Report>;

@injectable()
class ReportSaver {
  readonly saved: Message<Report>[] = [];

  @Subscribe(REPORTS, { schema: Report, group: 'savers' })
  save(message: Message<Report>): void {
    this.saved.push(message);
  }
}

describe('interop with redis-cli', () => {
  it('hands an entry from redis-cli XADD to a @Subscribe method of a service from the container, typed and validated', async () => {
    const container = new Container();
    container.bind(ReportSaver).toSelf().inSingletonScope();
    const server = new RedisServer({ broker: { url: SHARED_URL, tracing: false, metrics: false }, container, services: [ReportSaver] });
    const app = new App({ servers: [server], signals: [] });
    await app.start();
    try {
      const id = await cli([
        'XADD',
        REPORTS,
        '*',
        'payload',
        JSON.stringify({ agent: 'agent-7', cpu: 93.5 }),
        'content-type',
        'application/json',
        'x-site',
        'berlin',
      ]);
      const saver = container.get(ReportSaver);
      await waitFor(
        () => saver.saved.length === 1,
        5_000,
        () => 'nothing saved',
      );
      const [message] = saver.saved;
      expect(message?.body).toEqual({ agent: 'agent-7', cpu: 93.5, tags: [] }); // the schema's default applied
      expect(message?.topic).toBe(REPORTS);
      expect(message?.id).toBe(id.trim());
      expect(message?.headers).toEqual({ 'content-type': 'application/json', 'x-site': 'berlin' });
      // Acknowledged after the handler: nothing pending in the group.
      expect((await cli(['XPENDING', REPORTS, 'savers'])).split('\n')[0]).toBe('0');
    } finally {
      await app.stop();
    }
  });

  it('writes exactly the codec bytes and the headers as fields, as redis-cli XRANGE shows them', async () => {
    const broker = await open({ messageIds: true });
    const t = topic('to-cli');
    const body = { report: 'ümlaut ✓', values: [1, 2.5, null] };
    await broker.publish(t, body, { key: 'agent-7', headers: { 'x-tenant': 'acme', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } });
    await broker.publish(t, body, { codec: 'msgpack' });
    // --no-raw would escape; raw output prints each value on its own line, bytes as they are.
    const lines = (await cli(['--raw', 'XRANGE', t, '-', '+'])).split('\n');
    const first = lines.slice(1, 13);
    expect(first.slice(0, 2)).toEqual(['payload', Buffer.from(jsonCodec.encode(body)).toString()]);
    const fields = new Map<string, string>();
    for (let i = 2; i + 1 < first.length; i += 2) fields.set(first[i] ?? '', first[i + 1] ?? '');
    expect(Object.fromEntries(fields)).toMatchObject({
      'x-tenant': 'acme',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      'content-type': 'application/json',
      'message-key': 'agent-7',
    });
    expect(fields.get('message-id')).toMatch(/^[0-9a-f-]{36}$/);
    // A binary payload: redis-cli --no-raw quotes it byte by byte; it is exactly the msgpack bytes.
    const quoted = (await cli(['--no-raw', 'XRANGE', t, '-', '+'])).split('\n');
    const payloads = quoted.flatMap((line, i) => (line.trim().endsWith('"payload"') ? [quoted[i + 1]?.replace(/^\s*\d+\) /, '')] : []));
    expect(payloads[1]).toBe(repr(Buffer.from(msgpackCodec.encode(body))));
  });
});

/** Bytes as redis-cli quotes them (sdscatrepr): printable ASCII as is, `\\` and `"` escaped, the rest as escapes. */
function repr(bytes: Buffer): string {
  const named: Record<number, string> = { 0x5c: '\\\\', 0x22: '\\"', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t', 0x07: '\\a', 0x08: '\\b' };
  let out = '"';
  for (const byte of bytes) {
    out += named[byte] ?? (byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`);
  }
  return `${out}"`;
}
