import { SpanKind } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
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
});
