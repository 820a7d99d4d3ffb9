import * as grpc from '@grpc/grpc-js';
import { App, ConfigurationError, ConnectionError, DrainTimeoutError } from '@ktransport/broker';
import { BindError, GrpcServer, type GrpcMiddleware, type MethodInfo, ShutdownTimeoutError } from '@ktransport/transport-grpc';
import { afterEach, describe, expect, it } from 'vitest';
import {
  checkMethod,
  client,
  collect,
  countMethod,
  deferred,
  echoDefinition,
  echoMethod,
  echoService,
  failure,
  selfSignedCertificate,
  serverStream,
  sleep,
  unary,
} from './helpers.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function started(server: GrpcServer): Promise<grpc.Client> {
  await server.start();
  cleanup.push(() => server.stop());
  const c = client(server.address);
  cleanup.push(() => c.close());
  return c;
}

describe('GrpcServer', () => {
  it('serves unary and server-streaming calls for an App, on a free port of 127.0.0.1 by default', async () => {
    const server = new GrpcServer({ services: [echoService()], tracing: false });
    const app = new App({ servers: [server], signals: [] });
    await app.start();
    cleanup.push(() => app.stop());
    expect(server.name).toBe('grpc');
    expect(server.port).toBeGreaterThan(0);
    expect(server.address).toBe(`127.0.0.1:${server.port}`);
    const c = client(server.address);
    cleanup.push(() => c.close());
    await expect(unary(c, echoMethod, { text: 'hello', delay_ms: 0 })).resolves.toEqual({ text: 'hello' });
    await expect(collect(serverStream(c, countMethod, { to: 3 }))).resolves.toEqual([{ text: '1' }, { text: '2' }, { text: '3' }]);
    await app.stop();
    expect(server.port).toBeUndefined();
    expect(server.address).toBeUndefined();
  });

  it('drains an in-flight call on stop and refuses calls made after stop began', async () => {
    const entered = deferred();
    const server = new GrpcServer({
      tracing: false,
      services: [
        echoService({
          Echo: (call, callback) => {
            entered.resolve();
            void sleep(call.request.delay_ms).then(() => callback(null, { text: call.request.text }));
          },
        }),
      ],
    });
    const app = new App({ servers: [server], signals: [] });
    await app.start();
    const c = client(server.address);
    cleanup.push(() => c.close());
    const slow = unary(c, echoMethod, { text: 'slow', delay_ms: 300 });
    await entered.promise;
    const stopping = app.stop();
    await sleep(50);
    const refused = await failure(unary(c, echoMethod, { text: 'late', delay_ms: 0 }, new grpc.Metadata(), { deadline: Date.now() + 2000 }));
    expect(refused.code).toBe(grpc.status.UNAVAILABLE);
    await expect(slow).resolves.toEqual({ text: 'slow' });
    await stopping;
  });

  it('cancels calls still running after shutdownTimeoutMs and rejects stop with a DrainTimeoutError', async () => {
    const entered = deferred();
    const server = new GrpcServer({
      tracing: false,
      shutdownTimeoutMs: 100,
      services: [echoService({ Echo: () => entered.resolve() })], // never answers
    });
    const c = await started(server);
    const hanging = failure(unary(c, echoMethod, { text: 'x', delay_ms: 0 }));
    await entered.promise;
    const began = Date.now();
    const error = await failure(server.stop());
    expect(Date.now() - began).toBeLessThan(2000);
    expect(error).toBeInstanceOf(ShutdownTimeoutError);
    expect(error).toBeInstanceOf(DrainTimeoutError);
    expect((error as unknown as ShutdownTimeoutError).pending).toBe(1);
    expect(error.message).toBe('1 call(s) still running after 100 ms of draining; they were cancelled');
    expect([grpc.status.CANCELLED, grpc.status.UNAVAILABLE]).toContain((await hanging).code);
  });

  it('rejects start with a retriable BindError when the port is taken, and a non-retriable one for a bad address', async () => {
    const first = new GrpcServer({ tracing: false });
    await started(first);
    const address = `127.0.0.1:${first.port}`;
    const second = new GrpcServer({ address, name: 'second', tracing: false });
    const app = new App({ servers: [second], signals: [] });
    const error = await failure(app.start());
    expect(error).toBeInstanceOf(BindError);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).toMatchObject({ code: 'BIND_ERROR', retriable: true, address, message: `second: cannot listen on ${address}: address already in use` });
    expect(second.port).toBeUndefined();

    const bad = await failure(new GrpcServer({ address: 'not a valid::address', tracing: false }).start());
    expect(bad).toBeInstanceOf(BindError);
    expect(bad).toMatchObject({ retriable: false, address: 'not a valid::address' });
    expect(bad.message).toMatch(/^grpc: cannot listen on not a valid::address: /);
  });

  it('listens on a fixed address and can be started again after stop', async () => {
    const probe = new GrpcServer({ tracing: false });
    await probe.start();
    const port = probe.port;
    await probe.stop();
    const server = new GrpcServer({ address: `127.0.0.1:${port}`, services: [echoService()], tracing: false });
    for (let round = 0; round < 2; round++) {
      await server.start();
      expect(server.address).toBe(`127.0.0.1:${port}`);
      const c = client(server.address);
      await expect(unary(c, echoMethod, { text: `round ${round}`, delay_ms: 0 })).resolves.toEqual({ text: `round ${round}` });
      c.close();
      await server.stop();
    }
  });

  it('takes services from addService before start, and refuses duplicates, the health service name and late additions', async () => {
    const server = new GrpcServer({ tracing: false }).addService(echoDefinition, echoService().implementation);
    expect(() => server.addService(echoDefinition, echoService().implementation)).toThrow(ConfigurationError);
    expect(() => server.addService({}, {})).toThrow(ConfigurationError);
    const health = { Check: { ...checkMethod } } as grpc.ServiceDefinition;
    expect(() => server.addService(health, {})).toThrow(/served by the health option/);
    expect(() => new GrpcServer({ health: false }).addService(health, {})).not.toThrow();
    const c = await started(server);
    await expect(unary(c, echoMethod, { text: 'added', delay_ms: 0 })).resolves.toEqual({ text: 'added' });
    expect(() => server.addService(health, {})).toThrow(/before start/);
  });

  it('rejects a negative shutdownTimeoutMs at construction', () => {
    expect(() => new GrpcServer({ shutdownTimeoutMs: -1 })).toThrow(ConfigurationError);
  });

  it('runs middleware around every method of added services, but not around the health service', async () => {
    const seen: MethodInfo[] = [];
    const auth: GrpcMiddleware = (next, method) => {
      seen.push(method);
      if (method.kind !== 'unary') return next;
      const handler = next as grpc.handleUnaryCall<unknown, unknown>;
      const guarded: grpc.handleUnaryCall<unknown, unknown> = (call, callback) => {
        if (call.metadata.get('authorization')[0] !== 'Bearer secret') callback({ code: grpc.status.UNAUTHENTICATED, details: 'who are you?' });
        else handler(call, callback);
      };
      return guarded;
    };
    const c = await started(new GrpcServer({ services: [echoService()], middleware: [auth], tracing: false }));
    expect(seen).toEqual([
      { path: '/ktransport.test.Echo/Echo', service: 'ktransport.test.Echo', method: 'Echo', kind: 'unary' },
      { path: '/ktransport.test.Echo/Count', service: 'ktransport.test.Echo', method: 'Count', kind: 'serverStream' },
    ]);
    const denied = await failure(unary(c, echoMethod, { text: 'x', delay_ms: 0 }));
    expect(denied).toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: 'who are you?' });
    const metadata = new grpc.Metadata();
    metadata.set('authorization', 'Bearer secret');
    await expect(unary(c, echoMethod, { text: 'x', delay_ms: 0 }, metadata)).resolves.toEqual({ text: 'x' });
    await expect(unary(c, checkMethod, { service: '' })).resolves.toEqual({ status: 'SERVING' });
  });

  it('passes serverOptions to grpc-js (a receive limit here)', async () => {
    const c = await started(new GrpcServer({ services: [echoService()], tracing: false, serverOptions: { 'grpc.max_receive_message_length': 64 } }));
    await expect(unary(c, echoMethod, { text: 'short', delay_ms: 0 })).resolves.toEqual({ text: 'short' });
    const tooLong = await failure(unary(c, echoMethod, { text: 'x'.repeat(100), delay_ms: 0 }));
    expect(tooLong.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it('serves TLS with the given credentials', async () => {
    const { key, cert } = selfSignedCertificate();
    const server = new GrpcServer({
      services: [echoService()],
      tracing: false,
      credentials: grpc.ServerCredentials.createSsl(null, [{ private_key: key, cert_chain: cert }]),
    });
    await server.start();
    cleanup.push(() => server.stop());
    const secure = client(server.address, grpc.credentials.createSsl(cert), { 'grpc.ssl_target_name_override': 'localhost' });
    cleanup.push(() => secure.close());
    await expect(unary(secure, echoMethod, { text: 'over tls', delay_ms: 0 })).resolves.toEqual({ text: 'over tls' });
    const plain = client(server.address);
    cleanup.push(() => plain.close());
    const refused = await failure(unary(plain, echoMethod, { text: 'plain', delay_ms: 0 }, new grpc.Metadata(), { deadline: Date.now() + 2000 }));
    expect(refused.code).not.toBe(grpc.status.OK);
  });

  it("fails a call whose async handler rejects, with the error's gRPC code or UNKNOWN", async () => {
    const c = await started(
      new GrpcServer({
        tracing: false,
        services: [
          echoService({
            Echo: async (call) => {
              await sleep(1);
              if (call.request.text === 'coded') throw Object.assign(new Error('not now'), { code: grpc.status.FAILED_PRECONDITION });
              throw new Error('broken');
            },
            Count: async () => {
              await sleep(1);
              throw Object.assign(new Error('no counting'), { code: grpc.status.OUT_OF_RANGE });
            },
          }),
        ],
      }),
    );
    expect(await failure(unary(c, echoMethod, { text: 'coded', delay_ms: 0 }))).toMatchObject({ code: grpc.status.FAILED_PRECONDITION, details: 'not now' });
    expect(await failure(unary(c, echoMethod, { text: 'plain', delay_ms: 0 }))).toMatchObject({ code: grpc.status.UNKNOWN, details: 'broken' });
    expect(await failure(collect(serverStream(c, countMethod, { to: 1 })))).toMatchObject({ code: grpc.status.OUT_OF_RANGE, details: 'no counting' });
  });
});
