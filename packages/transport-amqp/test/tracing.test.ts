import { assertReplyTrace } from '@ktransport/broker/testing';
import { context, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanUp, open, unique, waitFor } from './helpers.js';

describe('tracing across RabbitMQ', () => {
  it('makes the process span a child of the send span, through the traceparent AMQP header', async () => {
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const producer = await open({ tracing: { tracerProvider }, messageIds: true });
    const consumer = await open({ tracing: { tracerProvider } });
    const base = unique('traced');
    cleanUp({ queues: [`savers-${base}:${base}/+/cpu`] });
    const t = `${base}/eu/cpu`;
    let traceparent: string | undefined;
    await consumer.subscribe(`${base}/+/cpu`, (m) => void (traceparent = m.headers.traceparent), { group: `savers-${base}` });
    await producer.publish(t, { cpu: 42 });
    await waitFor(
      () => exporter.getFinishedSpans().some((s) => s.name === `process ${t}`),
      5_000,
      () => 'no process span',
    );

    const send = exporter.getFinishedSpans().find((s) => s.name === `send ${t}`);
    const process = exporter.getFinishedSpans().find((s) => s.name === `process ${t}`);
    expect(send?.kind).toBe(SpanKind.PRODUCER);
    expect(process?.kind).toBe(SpanKind.CONSUMER);
    expect(process?.spanContext().traceId).toBe(send?.spanContext().traceId);
    expect(process?.parentSpanContext?.spanId).toBe(send?.spanContext().spanId);
    expect(traceparent).toBe(`00-${send?.spanContext().traceId}-${send?.spanContext().spanId}-01`);
    expect(send?.attributes).toMatchObject({
      'messaging.system': 'rabbitmq',
      'messaging.destination.name': t,
      'messaging.operation.type': 'send',
      'messaging.message.body.size': 10,
    });
    expect(process?.attributes).toMatchObject({
      'messaging.system': 'rabbitmq',
      'messaging.destination.name': t,
      'messaging.destination.template': `${base}/+/cpu`,
      'messaging.operation.name': 'process',
      'messaging.consumer.group.name': `savers-${base}`,
    });
    expect(process?.attributes['messaging.message.id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  describe('request–reply', () => {
    beforeAll(() => void context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()));
    afterAll(() => void context.disable());

    it('keeps the reply in the requester’s trace: send request → process → send reply (to the reply queue) → process reply', async () => {
      const exporter = new InMemorySpanExporter();
      const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
      const responder = await open({ tracing: { tracerProvider } });
      const requester = await open({ tracing: { tracerProvider } });
      const t = unique('traced-request');
      await responder.subscribe<number>(t, (m) => m.body + 1);
      const caller = tracerProvider.getTracer('test').startSpan('caller');
      const reply = await context.with(trace.setSpan(context.active(), caller), () => requester.request<number>(t, 41, { timeoutMs: 5_000 }));
      caller.end();
      expect(reply.body).toBe(42);
      await waitFor(
        // The caller's span and the four of the exchange: the responder's process span ends after its reply was confirmed, maybe after the reply arrived.
        () => exporter.getFinishedSpans().length >= 5,
        5_000,
        () =>
          exporter
            .getFinishedSpans()
            .map((s) => s.name)
            .join(', '),
      );
      // The reply's destination is the requester's queue, ktransport.reply.<uuid>.
      const { send } = assertReplyTrace(exporter.getFinishedSpans(), {
        topic: t,
        replySend: (name) => /^send ktransport\.reply\.[0-9a-f-]{36}$/.test(name),
        replyProcess: (name) => name.startsWith('process ktransport/reply/'),
      });
      expect(send.spanContext().traceId).toBe(caller.spanContext().traceId);
      expect(send.parentSpanContext?.spanId).toBe(caller.spanContext().spanId);
    });
  });
});
