import { assertReplyTrace } from '@ktransport/broker/testing';
import { context, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open, raw, topic, waitFor } from './helpers.js';

describe('tracing across Redis', () => {
  it('makes the process span a child of the send span, through the traceparent field of the entry', async () => {
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const producer = await open({ tracing: { tracerProvider }, messageIds: true });
    const consumer = await open({ tracing: { tracerProvider } });
    const t = topic('traced');
    let traceparent: string | undefined;
    let id: string | undefined;
    await consumer.subscribe(
      t,
      (m) => {
        traceparent = m.headers.traceparent;
        id = m.id;
      },
      { group: 'savers' },
    );
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
      'messaging.system': 'redis',
      'messaging.destination.name': t,
      'messaging.operation.type': 'send',
      'messaging.message.body.size': 10,
    });
    expect(process?.attributes).toMatchObject({
      'messaging.system': 'redis',
      'messaging.destination.name': t,
      'messaging.operation.name': 'process',
      'messaging.consumer.group.name': 'savers',
      'messaging.message.id': id,
    });
    // The trace context is a field of the entry, beside the payload.
    const client = await raw();
    const [[, fields] = ['', []]] = await client.sendCommand<[Buffer, Buffer[]][]>(['XRANGE', t, '-', '+']);
    expect(fields.map(String)).toContain('traceparent');
  });
});

describe('tracing of request–reply across Redis', () => {
  beforeAll(() => void context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()));
  afterAll(() => void context.disable());

  it('keeps the reply in the requester’s trace: send request → process → send reply → process reply, through the entries’ traceparent fields', async () => {
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const requester = await open({ tracing: { tracerProvider } });
    const responder = await open({ tracing: { tracerProvider } });
    const t = topic('traced-request');
    await responder.subscribe(t, () => 'answer', { group: 'answerers' });
    const caller = tracerProvider.getTracer('test').startSpan('caller');
    const reply = await context.with(trace.setSpan(context.active(), caller), () => requester.request(t, 'question', { timeoutMs: 5_000 }));
    caller.end();
    expect(reply.body).toBe('answer');
    await waitFor(
      () => exporter.getFinishedSpans().length >= 5,
      5_000,
      () =>
        exporter
          .getFinishedSpans()
          .map((s) => s.name)
          .join(', '),
    );
    const { send } = assertReplyTrace(exporter.getFinishedSpans(), {
      topic: t,
      replySend: (name) => name.startsWith('send ktransport:reply:'),
      replyProcess: (name) => name.startsWith('process ktransport:reply:'),
    });
    expect(send.spanContext().traceId).toBe(caller.spanContext().traceId);
    expect(send.parentSpanContext?.spanId).toBe(caller.spanContext().spanId);
  });
});
