import { SpanKind } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
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
