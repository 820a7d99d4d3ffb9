import 'reflect-metadata';
import { spawn } from 'node:child_process';
import { App, jsonCodec, type Message, Subscribe } from '@ktransport/broker';
import { MqttServer } from '@ktransport/transport-mqtt';
import { Container, injectable } from 'inversify';
import { beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ensureMosquitto, SHARED_URL, tool } from './mosquitto.js';
import { open, sleep, topic, waitFor } from './helpers.js';

beforeAll(ensureMosquitto);

const REPORTS = topic('reports');
const Report = z.object({ agent: z.string(), cpu: z.number().min(0).max(100), tags: z.array(z.string()).default([]) });
type Report = z.infer<typeof Report>;

@injectable()
class ReportSaver {
  readonly saved: Message<Report>[] = [];

  @Subscribe(REPORTS, { schema: Report })
  save(message: Message<Report>): void {
    this.saved.push(message);
  }
}

describe('interop with the Mosquitto command line clients', () => {
  it('hands a JSON message from mosquitto_pub -V 5 to a @Subscribe method of a service from the container, typed and validated', async () => {
    const container = new Container();
    container.bind(ReportSaver).toSelf().inSingletonScope();
    const server = new MqttServer({ broker: { url: SHARED_URL, tracing: false, metrics: false }, container, services: [ReportSaver] });
    const app = new App({ servers: [server], signals: [] });
    await app.start();
    try {
      await tool('mosquitto_pub', [
        '-h',
        '127.0.0.1',
        '-p',
        '1883',
        '-V',
        '5',
        '-q',
        '1',
        '-t',
        REPORTS,
        '-D',
        'publish',
        'content-type',
        'application/json',
        '-D',
        'publish',
        'user-property',
        'x-site',
        'berlin',
        '-m',
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

  it('publishes exactly the codec bytes, with content type and user properties, as mosquitto_sub -V 5 sees them', async () => {
    const broker = await open({ messageIds: true });
    const t = topic('to-sub');
    const body = { report: 'ümlaut ✓', values: [1, 2.5, null] };
    const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', '1883', '-V', '5', '-q', '1', '-t', t, '-C', '1', '-W', '15', '-F', '%C\\n%P\\n%x'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    sub.stdout.on('data', (chunk: Buffer) => void (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => sub.once('exit', resolve));
    let done = false;
    void exited.then(() => (done = true));
    // mosquitto_sub subscribes asynchronously: publish until it has printed one message.
    for (let i = 0; i < 50 && !done; i++) {
      await broker.publish(t, body, {
        key: 'agent-7',
        headers: { 'x-tenant': 'acme', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      });
      await Promise.race([exited, sleep(200)]);
    }
    expect(await exited).toBe(0);
    const [contentType, properties, hex] = out.trimEnd().split('\n');
    expect(contentType).toBe('application/json');
    expect(properties).toContain('x-tenant:acme');
    expect(properties).toContain('traceparent:00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(properties).toMatch(/message-id:[0-9a-f-]{36}/);
    expect(properties).toContain('message-key:agent-7');
    expect(hex).toBe(Buffer.from(jsonCodec.encode(body)).toString('hex'));
  });
});
