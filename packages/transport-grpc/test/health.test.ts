import * as grpc from '@grpc/grpc-js';
import { loadSync, type ServiceDefinition } from '@grpc/proto-loader';
import { MemoryBroker } from '@ktransport/broker';
import { waitFor } from '@ktransport/broker/testing';
import { GrpcServer, type GrpcServerOptions, healthDefinition, type ServingStatus } from '@ktransport/transport-grpc';
import { afterEach, describe, expect, it } from 'vitest';
import {
  checkMethod,
  client,
  deferred,
  echoMethod,
  echoService,
  failure,
  FakeConnection,
  type HealthReply,
  serverStream,
  shippedHealthProto,
  sleep,
  unary,
  watchMethod,
} from './helpers.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function serve(options: GrpcServerOptions): Promise<{ server: GrpcServer; client: grpc.Client }> {
  const server = new GrpcServer({ tracing: false, ...options });
  await server.start();
  cleanup.push(() => server.stop());
  const c = client(server.address);
  cleanup.push(() => c.close());
  return { server, client: c };
}

const check = async (c: grpc.Client, service = ''): Promise<ServingStatus> => (await unary(c, checkMethod, { service })).status;

/** Follows a Watch stream: every status received, and whether and how it ended. */
function watch(c: grpc.Client, service = ''): { statuses: ServingStatus[]; ended: Promise<grpc.StatusObject>; cancel: () => void } {
  const stream = serverStream(c, watchMethod, { service });
  const statuses: ServingStatus[] = [];
  const ended = deferred<grpc.StatusObject>();
  stream.on('data', (reply: HealthReply) => statuses.push(reply.status));
  stream.on('status', (status: grpc.StatusObject) => ended.resolve(status));
  stream.on('error', () => undefined);
  return { statuses, ended: ended.promise, cancel: () => stream.cancel() };
}

describe('health', () => {
  it('answers SERVING for the server and its services when there are no dependencies', async () => {
    const { client: c } = await serve({ services: [echoService()] });
    expect(await check(c)).toBe('SERVING');
    expect(await check(c, 'ktransport.test.Echo')).toBe('SERVING');
  });

  it('follows the dependencies: NOT_SERVING unless every one is connected', async () => {
    const broker = new FakeConnection('reconnecting');
    const database = new FakeConnection('connected');
    const { client: c } = await serve({ health: { dependencies: [broker, database] } });
    expect(await check(c)).toBe('NOT_SERVING');
    broker.set('connected');
    expect(await check(c)).toBe('SERVING');
    database.set('disconnected');
    expect(await check(c)).toBe('NOT_SERVING');
    database.set('connected');
    expect(await check(c)).toBe('SERVING');
  });

  it('follows a real broker through its ObservableConnection state', async () => {
    const broker = new MemoryBroker({ tracing: false, metrics: false });
    const { client: c } = await serve({ health: { dependencies: [broker] } });
    expect(await check(c)).toBe('NOT_SERVING');
    await broker.connect();
    expect(await check(c)).toBe('SERVING');
    await broker.disconnect();
    expect(await check(c)).toBe('NOT_SERVING');
  });

  it('streams each change to Watch', async () => {
    const broker = new FakeConnection('disconnected');
    const { client: c } = await serve({ health: { dependencies: [broker] } });
    const watching = watch(c);
    cleanup.push(watching.cancel);
    await waitFor(
      () => watching.statuses.length === 1,
      2000,
      () => `statuses ${watching.statuses.join()}`,
    );
    broker.set('connecting');
    broker.set('connected');
    await waitFor(
      () => watching.statuses.length === 2,
      2000,
      () => `statuses ${watching.statuses.join()}`,
    );
    broker.set('reconnecting');
    await waitFor(
      () => watching.statuses.length === 3,
      2000,
      () => `statuses ${watching.statuses.join()}`,
    );
    // 'connecting' after 'disconnected' changed nothing, so it sent nothing.
    expect(watching.statuses).toEqual(['NOT_SERVING', 'SERVING', 'NOT_SERVING']);
  });

  it('answers NOT_FOUND to Check and SERVICE_UNKNOWN to Watch for an unknown service', async () => {
    const { client: c } = await serve({ services: [echoService()] });
    const error = await failure(check(c, 'nobody.Home'));
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    const watching = watch(c, 'nobody.Home');
    cleanup.push(watching.cancel);
    await waitFor(
      () => watching.statuses.length === 1,
      2000,
      () => 'no status',
    );
    expect(watching.statuses).toEqual(['SERVICE_UNKNOWN']);
  });

  it('gives named services their own dependencies on top of the server-wide ones', async () => {
    const broker = new FakeConnection('connected');
    const database = new FakeConnection('disconnected');
    const { client: c } = await serve({ services: [echoService()], health: { dependencies: [broker], services: { 'store.Reports': [database] } } });
    expect(await check(c)).toBe('SERVING');
    expect(await check(c, 'ktransport.test.Echo')).toBe('SERVING');
    expect(await check(c, 'store.Reports')).toBe('NOT_SERVING');
    database.set('connected');
    expect(await check(c, 'store.Reports')).toBe('SERVING');
    broker.set('reconnecting');
    expect(await check(c, 'store.Reports')).toBe('NOT_SERVING');
    expect(await check(c, 'ktransport.test.Echo')).toBe('NOT_SERVING');
  });

  it('turns NOT_SERVING as soon as stop begins, tells watchers, and ends their streams so the drain is not held up', async () => {
    const entered = deferred();
    const { server, client: c } = await serve({
      services: [
        echoService({
          Echo: (call, callback) => {
            entered.resolve();
            void sleep(call.request.delay_ms).then(() => callback(null, { text: 'done' }));
          },
        }),
      ],
      shutdownTimeoutMs: 5000,
    });
    const watching = watch(c);
    await waitFor(
      () => watching.statuses.length === 1,
      2000,
      () => 'no status',
    );
    const slow = unary(c, echoMethod, { text: '', delay_ms: 300 });
    await entered.promise;
    const stopping = server.stop();
    await waitFor(
      () => watching.statuses.length === 2,
      2000,
      () => `statuses ${watching.statuses.join()}`,
    );
    expect(watching.statuses).toEqual(['SERVING', 'NOT_SERVING']);
    expect((await watching.ended).code).toBe(grpc.status.OK);
    // The watch ended while the slow call still runs: stop waits for that call only.
    await expect(slow).resolves.toEqual({ text: 'done' });
    await stopping;
  });

  it('leaves the health service out with health: false', async () => {
    const { client: c } = await serve({ health: false, services: [echoService()] });
    expect((await failure(check(c))).code).toBe(grpc.status.UNIMPLEMENTED);
  });

  it('serves the descriptors of the health.proto shipped in the package', () => {
    const shipped = loadSync(shippedHealthProto, { keepCase: true, defaults: true, enums: String });
    const service = shipped['grpc.health.v1.Health'] as ServiceDefinition;
    expect(Object.keys(healthDefinition)).toEqual(Object.keys(service));
    for (const [name, method] of Object.entries(healthDefinition)) {
      const expected = service[name];
      if (expected === undefined) throw new Error(`the shipped health.proto has no method ${name}`);
      expect({ path: method.path, requestStream: method.requestStream, responseStream: method.responseStream }).toEqual({
        path: expected.path,
        requestStream: expected.requestStream,
        responseStream: expected.responseStream,
      });
      expect(method.requestType.fileDescriptorProtos).toEqual(expected.requestType.fileDescriptorProtos);
      expect(method.responseType.fileDescriptorProtos).toEqual(expected.responseType.fileDescriptorProtos);
    }
  });
});
