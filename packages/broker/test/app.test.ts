import { describe, expect, it } from 'vitest';
import { App, type Server, StopError, TimeoutError } from '@ktransport/broker';
import { waitFor } from '@ktransport/broker/testing';

function server(name: string, log: string[], behaviour: { failStart?: boolean; stopMs?: number } = {}): Server {
  return {
    name,
    start() {
      if (behaviour.failStart) return Promise.reject(new Error(`${name} cannot bind`));
      log.push(`start ${name}`);
      return Promise.resolve();
    },
    async stop() {
      log.push(`stop ${name}`);
      await new Promise((r) => setTimeout(r, behaviour.stopMs ?? 0));
    },
  };
}

describe('App', () => {
  it('starts servers in order and stops them in reverse order', async () => {
    const log: string[] = [];
    const lines: string[] = [];
    const app = new App({ name: 'saver', servers: [server('broker', log), server('grpc', log)], signals: [], logger: (l) => lines.push(l) });
    await app.start();
    let stopped = false;
    void app.stopped.then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 5));
    expect(stopped).toBe(false);
    await app.stop();
    await app.stopped;
    expect(stopped).toBe(true);
    expect(log).toEqual(['start broker', 'start grpc', 'stop grpc', 'stop broker']);
    expect(lines).toContain('saver: grpc stopped');
  });

  it('stops what started when a later server fails to start', async () => {
    const log: string[] = [];
    const app = new App({ servers: [server('a', log), server('b', log, { failStart: true })], signals: [] });
    await expect(app.start()).rejects.toThrow('b cannot bind');
    expect(log).toEqual(['start a', 'stop a']);
  });

  it('stops on SIGTERM and run() resolves', async () => {
    const log: string[] = [];
    const app = new App({ servers: [server('a', log)], signals: ['SIGTERM'] });
    const running = app.run();
    await waitFor(
      () => log.length === 1,
      2000,
      () => 'not started',
    );
    process.emit('SIGTERM');
    await running;
    expect(log).toEqual(['start a', 'stop a']);
    expect(process.listenerCount('SIGTERM')).toBe(0);
    await app.stopped;
  });

  it('gives up waiting for a server that does not stop within stopTimeoutMs and still stops the others', async () => {
    const log: string[] = [];
    const app = new App({ servers: [server('a', log), server('slow', log, { stopMs: 500 })], stopTimeoutMs: 50, signals: [] });
    await app.start();
    const error = await app.stop().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StopError);
    expect((error as StopError).errors[0]).toBeInstanceOf(TimeoutError);
    expect(log).toContain('stop a');
  });

  it('can be started again after it stopped, and a signal still stops the second run', async () => {
    const log: string[] = [];
    const app = new App({ servers: [server('a', log)], signals: ['SIGTERM'] });
    await app.start();
    await expect(app.start()).rejects.toThrow(/already started/);
    await app.stop();
    expect(process.listenerCount('SIGTERM')).toBe(0);
    const second = app.run();
    await waitFor(
      () => log.length === 3,
      2000,
      () => log.join(),
    );
    expect(process.listenerCount('SIGTERM')).toBe(1);
    process.emit('SIGTERM');
    await second;
    expect(log).toEqual(['start a', 'stop a', 'start a', 'stop a']);
    expect(process.listenerCount('SIGTERM')).toBe(0);
  });

  it('run() and stopped reject with the StopError when a server did not stop in time', async () => {
    const log: string[] = [];
    const app = new App({ servers: [server('slow', log, { stopMs: 300 })], stopTimeoutMs: 20, signals: ['SIGTERM'] });
    const running = app.run();
    await waitFor(
      () => log.length === 1,
      2000,
      () => 'not started',
    );
    process.emit('SIGTERM');
    await expect(running).rejects.toBeInstanceOf(StopError);
    await expect(app.stopped).rejects.toBeInstanceOf(StopError);
  });

  it('stops a server that finished starting after stop() was called, and start() says so', async () => {
    const log: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow: Server = {
      name: 'slow',
      async start() {
        await gate;
        log.push('start slow');
      },
      stop() {
        log.push('stop slow');
        return Promise.resolve();
      },
    };
    const app = new App({ servers: [server('a', log), slow], signals: [] });
    const starting = app.start();
    await waitFor(
      () => log.length === 1,
      2000,
      () => 'a not started',
    );
    const stopping = app.stop();
    release();
    await expect(starting).rejects.toThrow(/stopped while slow was starting/);
    await stopping;
    expect(log).toEqual(['start a', 'stop a', 'start slow', 'stop slow']);
  });
});
