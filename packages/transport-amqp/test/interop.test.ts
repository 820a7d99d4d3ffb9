import 'reflect-metadata';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { App, jsonCodec, type Message, Subscribe } from '@ktransport/broker';
import { AmqpServer, UnroutableError } from '@ktransport/transport-amqp';
import amqplib, { type ConsumeMessage } from 'amqplib';
import { Container, injectable } from 'inversify';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { cleanUp, open, SHARED_URL, sleep, unique, waitFor } from './helpers.js';

const run = promisify(execFile);

/** Runs one of Debian's amqp-tools (package amqp-tools); a missing tool fails the test with the reason. */
async function tool(name: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(name, args, { timeout: 15_000, encoding: 'utf8' });
    return stdout;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${name} is not installed: apt-get install amqp-tools`, { cause: error });
    throw error;
  }
}

const BASE = unique('interop');
const REPORTS = `${BASE}/reports`;
const GROUP = unique('savers');
const Report = z.object({ agent: z.string(), cpu: z.number().min(0).max(100), tags: z.array(z.string()).default([]) });
type Report = z.infer<typeof Report>;

@injectable()
class ReportSaver {
  readonly saved: Message<Report>[] = [];

  @Subscribe(REPORTS, { schema: Report, group: GROUP, prefetch: 10 }) // prefetch: AMQP's own option, typed through the core's options
  save(message: Message<Report>): void {
    this.saved.push(message);
  }
}

describe('interop with the amqp-tools command line clients', () => {
  it('hands a JSON message from amqp-publish (routing key with dots, content type, a header) to a @Subscribe method, typed and validated', async () => {
    cleanUp({ queues: [`${GROUP}:${REPORTS}`] });
    const container = new Container();
    container.bind(ReportSaver).toSelf().inSingletonScope();
    const server = new AmqpServer({ broker: { url: SHARED_URL, tracing: false, metrics: false }, container, services: [ReportSaver] });
    const app = new App({ servers: [server], signals: [] });
    await app.start();
    try {
      await tool('amqp-publish', [
        '-u',
        SHARED_URL,
        '-e',
        'ktransport',
        '-r',
        `${BASE}.reports`,
        '-C',
        'application/json',
        '-H',
        'x-site: berlin',
        '-b',
        JSON.stringify({ agent: 'agent-7', cpu: 93.5 }),
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
      expect(message?.headers).toMatchObject({ 'content-type': 'application/json', 'x-site': 'berlin' });
    } finally {
      await app.stop();
    }
  });

  it('publishes exactly the codec bytes, as amqp-consume reads them, with the headers in the AMQP table', async () => {
    const broker = await open({ messageIds: true });
    const t = `${unique('to-consume')}/eu`;
    const body = { report: 'ümlaut ✓', values: [1, 2.5, null] };
    // A raw consumer beside it, for the properties and headers amqp-consume does not print.
    const connection = await amqplib.connect(SHARED_URL);
    try {
      const channel = await connection.createChannel();
      const { queue } = await channel.assertQueue('', { exclusive: true });
      await channel.bindQueue(queue, 'ktransport', t.replace('/', '.'));
      const seen: ConsumeMessage[] = [];
      await channel.consume(queue, (m) => void (m && seen.push(m)), { noAck: true });

      const consume = spawn('amqp-consume', ['-u', SHARED_URL, '-e', 'ktransport', '-r', t.replace('/', '.'), '-x', '-c', '1', 'cat'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const chunks: Buffer[] = [];
      consume.stdout.on('data', (chunk: Buffer) => void chunks.push(chunk));
      const exited = new Promise<number | null>((resolve) => {
        consume.once('exit', resolve);
        consume.once('error', () => resolve(-1));
      });
      const timer = setTimeout(() => consume.kill('SIGKILL'), 15_000);
      // amqp-consume binds its queue asynchronously, beside the raw one: publish (mandatory) until it has printed one message.
      let done = false;
      void exited.then(() => (done = true));
      for (let i = 0; i < 50 && !done; i++) {
        await broker.publish(t, body, { key: 'agent-7', headers: { 'x-tenant': 'acme' } }).catch((error: unknown) => {
          if (!(error instanceof UnroutableError)) throw error;
        });
        await Promise.race([exited, sleep(200)]);
      }
      clearTimeout(timer);
      expect(await exited).toBe(0);
      expect(Buffer.concat(chunks).toString('hex')).toBe(Buffer.from(jsonCodec.encode(body)).toString('hex'));
      await waitFor(
        () => seen.length >= 1,
        5_000,
        () => 'the raw consumer got nothing',
      );
      const [first] = seen;
      expect(first?.properties.contentType).toBe('application/json');
      expect(first?.properties.messageId).toMatch(/^[0-9a-f-]{36}$/);
      expect(first?.properties.headers).toMatchObject({ 'x-tenant': 'acme', 'message-key': 'agent-7' });
      expect(first?.properties.headers?.traceparent).toBeUndefined(); // tracing is off in these tests
    } finally {
      await connection.close();
    }
  });
});
