import * as grpc from '@grpc/grpc-js';
import { MemoryBroker } from '@ktransport/broker';
import { GrpcServer, traceMetadata } from '@ktransport/transport-grpc';
import {
  context,
  type Context,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { client, collect, countMethod, echoMethod, echoService, failure, serverStream, sleep, spanNamed, tracer, unary } from './helpers.js';

const ECHO = 'ktransport.test.Echo/Echo';
const COUNT = 'ktransport.test.Echo/Count';

const contextManager = new AsyncLocalStorageContextManager().enable();
beforeAll(() => void context.setGlobalContextManager(contextManager));
afterAll(() => {
  context.disable();
  contextManager.disable();
});

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

describe('tracing', () => {
  it('emits a SERVER span per call with the RPC attributes', async () => {
    const { provider, exporter } = tracer();
    const c = await started(new GrpcServer({ services: [echoService()], tracing: { tracerProvider: provider } }));
    await unary(c, echoMethod, { text: 'hi', delay_ms: 0 });
    const span = spanNamed(exporter.getFinishedSpans(), ECHO);
    expect(span.kind).toBe(SpanKind.SERVER);
    expect(span.attributes).toEqual({ 'rpc.system': 'grpc', 'rpc.service': 'ktransport.test.Echo', 'rpc.method': 'Echo', 'rpc.grpc.status_code': 0 });
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(span.parentSpanContext).toBeUndefined();
  });

  it('continues the trace of a client that sent traceparent (traceMetadata)', async () => {
    const { provider, exporter } = tracer();
    const c = await started(new GrpcServer({ services: [echoService()], tracing: { tracerProvider: provider } }));
    const caller = provider.getTracer('client').startSpan('caller', { kind: SpanKind.CLIENT });
    const metadata = traceMetadata({ context: trace.setSpan(ROOT_CONTEXT, caller) });
    expect(metadata.get('traceparent')).toEqual([`00-${caller.spanContext().traceId}-${caller.spanContext().spanId}-01`]);
    await unary(c, echoMethod, { text: 'hi', delay_ms: 0 }, metadata);
    caller.end();
    const span = spanNamed(exporter.getFinishedSpans(), ECHO);
    expect(span.spanContext().traceId).toBe(caller.spanContext().traceId);
    expect(span.parentSpanContext?.spanId).toBe(caller.spanContext().spanId);
    expect(span.parentSpanContext?.isRemote).toBe(true);
  });

  it('traceMetadata uses the active context by default and adds to given metadata', () => {
    const { provider } = tracer();
    const span = provider.getTracer('client').startSpan('caller');
    const given = new grpc.Metadata();
    given.set('x-tenant', 'acme');
    const metadata = context.with(trace.setSpan(ROOT_CONTEXT, span), () => traceMetadata({ metadata: given }));
    span.end();
    expect(metadata).toBe(given);
    expect(metadata.get('x-tenant')).toEqual(['acme']);
    expect(metadata.get('traceparent')).toEqual([`00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`]);
    expect(traceMetadata().get('traceparent')).toEqual([]);
  });

  it('keeps the server span active in the handler: a broker publish there is its child', async () => {
    const { provider, exporter } = tracer();
    const broker = new MemoryBroker({ tracing: { tracerProvider: provider }, metrics: false });
    await broker.connect();
    cleanup.push(() => broker.disconnect());
    const c = await started(
      new GrpcServer({
        tracing: { tracerProvider: provider },
        services: [
          echoService({
            Echo: async (call, callback) => {
              await sleep(1);
              await broker.publish('reports', { text: call.request.text });
              callback(null, { text: 'saved' });
            },
          }),
        ],
      }),
    );
    await unary(c, echoMethod, { text: 'report', delay_ms: 0 });
    const spans = exporter.getFinishedSpans();
    const server = spanNamed(spans, ECHO);
    const send = spanNamed(spans, 'send reports');
    expect(send.spanContext().traceId).toBe(server.spanContext().traceId);
    expect(send.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
  });

  it('records the status code and error.type of failed calls; server faults set the span status to ERROR', async () => {
    const { provider, exporter } = tracer();
    const c = await started(
      new GrpcServer({
        tracing: { tracerProvider: provider },
        services: [
          echoService({
            Echo: (call, callback) => {
              if (call.request.text === 'invalid') return callback({ code: grpc.status.INVALID_ARGUMENT, details: 'bad text' });
              if (call.request.text === 'slow') return void sleep(300).then(() => callback(null, { text: 'late' }));
              throw new RangeError('handler bug');
            },
          }),
        ],
      }),
    );
    await failure(unary(c, echoMethod, { text: 'invalid', delay_ms: 0 }));
    await failure(unary(c, echoMethod, { text: 'throw', delay_ms: 0 }));
    await failure(unary(c, echoMethod, { text: 'slow', delay_ms: 0 }, new grpc.Metadata(), { deadline: Date.now() + 50 }));
    await sleep(20);
    const [invalid, thrown, slow] = exporter.getFinishedSpans().filter((s) => s.name === ECHO);
    expect(invalid?.attributes).toMatchObject({ 'rpc.grpc.status_code': grpc.status.INVALID_ARGUMENT, 'error.type': 'INVALID_ARGUMENT' });
    expect(invalid?.status.code).toBe(SpanStatusCode.UNSET);
    expect(thrown?.attributes).toMatchObject({ 'rpc.grpc.status_code': grpc.status.UNKNOWN, 'error.type': 'UNKNOWN' });
    expect(thrown?.status).toEqual({ code: SpanStatusCode.ERROR, message: 'handler bug' });
    expect(thrown?.events.map((e) => e.name)).toEqual(['exception']);
    expect(slow?.attributes).toMatchObject({ 'rpc.grpc.status_code': grpc.status.DEADLINE_EXCEEDED, 'error.type': 'DEADLINE_EXCEEDED' });
    expect(slow?.status.code).toBe(SpanStatusCode.ERROR);
  });

  it('covers a server-streaming call until its stream ends', async () => {
    const { provider, exporter } = tracer();
    let endedWhileStreaming: number | undefined;
    const c = await started(
      new GrpcServer({
        tracing: { tracerProvider: provider },
        services: [
          echoService({
            Echo: (_call, callback) => callback(null, { text: '' }),
            Count: (call) => {
              if (call.request.to < 0) return void call.emit('error', { code: grpc.status.OUT_OF_RANGE, details: 'negative' });
              call.write({ text: 'first' });
              void sleep(50).then(() => {
                endedWhileStreaming = exporter.getFinishedSpans().filter((s) => s.name === COUNT).length;
                call.end();
              });
            },
          }),
        ],
      }),
    );
    await expect(collect(serverStream(c, countMethod, { to: 1 }))).resolves.toEqual([{ text: 'first' }]);
    await failure(collect(serverStream(c, countMethod, { to: -1 })));
    await sleep(20);
    const [ok, failed] = exporter.getFinishedSpans().filter((s) => s.name === COUNT);
    expect(ok?.attributes).toMatchObject({ 'rpc.method': 'Count', 'rpc.grpc.status_code': grpc.status.OK });
    expect(endedWhileStreaming).toBe(0);
    expect(failed?.attributes).toMatchObject({ 'rpc.grpc.status_code': grpc.status.OUT_OF_RANGE, 'error.type': 'OUT_OF_RANGE' });
  });

  it('uses the global tracer provider by default, and none with tracing: false', async () => {
    const { provider, exporter } = tracer();
    trace.setGlobalTracerProvider(provider);
    cleanup.push(() => trace.disable());
    const traced = await started(new GrpcServer({ services: [echoService()] }));
    await unary(traced, echoMethod, { text: 'a', delay_ms: 0 });
    expect(exporter.getFinishedSpans().map((s) => s.name)).toEqual([ECHO]);
    const untraced = await started(new GrpcServer({ services: [echoService()], tracing: false }));
    await unary(untraced, echoMethod, { text: 'b', delay_ms: 0 });
    expect(exporter.getFinishedSpans()).toHaveLength(1);
  });

  it('reads the parent with the given propagator', async () => {
    /** Carries `traceId:spanId` in an `x-trace` header. */
    class HeaderPropagator implements TextMapPropagator {
      inject(ctx: Context, carrier: unknown, setter: TextMapSetter): void {
        const span = trace.getSpanContext(ctx);
        if (span) setter.set(carrier, 'x-trace', `${span.traceId}:${span.spanId}`);
      }
      extract(ctx: Context, carrier: unknown, getter: TextMapGetter): Context {
        const value = getter.get(carrier, 'x-trace');
        const [traceId = '', spanId = ''] = (Array.isArray(value) ? value[0] : value)?.split(':') ?? [];
        return traceId ? trace.setSpanContext(ctx, { traceId, spanId, traceFlags: 1, isRemote: true }) : ctx;
      }
      fields(): string[] {
        return ['x-trace'];
      }
    }
    const propagator = new HeaderPropagator();
    const { provider, exporter } = tracer();
    const c = await started(new GrpcServer({ services: [echoService()], tracing: { tracerProvider: provider, propagator } }));
    const caller = provider.getTracer('client').startSpan('caller');
    const metadata = traceMetadata({ context: trace.setSpan(ROOT_CONTEXT, caller), propagator });
    expect(metadata.get('traceparent')).toEqual([]);
    await unary(c, echoMethod, { text: 'hi', delay_ms: 0 }, metadata);
    caller.end();
    expect(spanNamed(exporter.getFinishedSpans(), ECHO).parentSpanContext?.spanId).toBe(caller.spanContext().spanId);
  });
});
