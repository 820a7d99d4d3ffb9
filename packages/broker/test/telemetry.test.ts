import { propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, type TextMapPropagator } from '@opentelemetry/api';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { type Message, W3CTraceContext } from '@ktransport/broker';
import { sleep, waitFor } from '@ktransport/broker/testing';
import { defined, memoryBroker } from './helpers.js';

function tracer(): { provider: BasicTracerProvider; exporter: InMemorySpanExporter } {
  const exporter = new InMemorySpanExporter();
  return { exporter, provider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }) };
}

class TestReader extends MetricReader {
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const byName = (spans: ReadableSpan[], name: string): ReadableSpan => {
  const span = spans.find((s) => s.name === name);
  if (!span) throw new Error(`no span ${name}; have ${spans.map((s) => s.name).join(', ')}`);
  return span;
};

describe('tracing', () => {
  it('emits send (PRODUCER) and process (CONSUMER) spans, process a child of send through the headers', async () => {
    const { provider, exporter } = tracer();
    const broker = await memoryBroker({ tracing: { tracerProvider: provider }, messageIds: true });
    const got: Message[] = [];
    await broker.subscribe('devices/+/report', (m) => void got.push(m), { group: 'savers' });
    await broker.publish('devices/7/report', { ok: true });
    await waitFor(
      () => exporter.getFinishedSpans().length === 2,
      2000,
      () => `${exporter.getFinishedSpans().length} spans`,
    );
    const spans = exporter.getFinishedSpans();
    const send = byName(spans, 'send devices/7/report');
    const process = byName(spans, 'process devices/7/report');
    expect(send.kind).toBe(SpanKind.PRODUCER);
    expect(process.kind).toBe(SpanKind.CONSUMER);
    expect(process.spanContext().traceId).toBe(send.spanContext().traceId);
    expect(process.parentSpanContext?.spanId).toBe(send.spanContext().spanId);
    expect(got[0]?.headers.traceparent).toBe(`00-${send.spanContext().traceId}-${send.spanContext().spanId}-01`);
    expect(send.attributes).toMatchObject({
      'messaging.system': 'memory',
      'messaging.destination.name': 'devices/7/report',
      'messaging.operation.name': 'send',
      'messaging.operation.type': 'send',
      'messaging.message.id': got[0]?.id,
      'messaging.message.body.size': 11,
    });
    expect(got[0]?.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(process.attributes).toMatchObject({
      'messaging.system': 'memory',
      'messaging.destination.name': 'devices/7/report',
      'messaging.destination.template': 'devices/+/report',
      'messaging.operation.name': 'process',
      'messaging.operation.type': 'process',
      'messaging.consumer.group.name': 'savers',
      'messaging.message.id': got[0]?.id,
      'messaging.message.body.size': 11,
    });
    await broker.disconnect();
  });

  it('marks a failed process span with error.type', async () => {
    const { provider, exporter } = tracer();
    const broker = await memoryBroker({ tracing: { tracerProvider: provider } });
    await broker.subscribe('dlq', () => undefined);
    await broker.subscribe(
      't',
      () => {
        throw new RangeError('reading out of range');
      },
      { deadLetter: 'dlq' },
    );
    await broker.publish('t', 1);
    await waitFor(
      () => exporter.getFinishedSpans().some((s) => s.name === 'process dlq'),
      2000,
      () => 'no dlq span',
    );
    await broker.disconnect();
    // The dead-letter middleware acknowledges, so the process span itself succeeds; the handler error is on the DLQ message.
    const failing = await memoryBroker({ tracing: { tracerProvider: provider }, redeliveryDelayMs: 10_000, drainTimeoutMs: 0 });
    await failing.subscribe('u', () => {
      throw new RangeError('reading out of range');
    });
    await failing.publish('u', 1);
    await waitFor(
      () => exporter.getFinishedSpans().some((s) => s.name === 'process u'),
      2000,
      () => 'no span',
    );
    const span = byName(exporter.getFinishedSpans(), 'process u');
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.attributes['error.type']).toBe('RangeError');
    await failing.disconnect().catch(() => undefined);
  });

  it('ends a process span when an async handler settles, and marks a late rejection as failed', async () => {
    const { provider, exporter } = tracer();
    const broker = await memoryBroker({ tracing: { tracerProvider: provider }, redeliveryDelayMs: 10_000, drainTimeoutMs: 0 });
    await broker.subscribe('slow', async () => {
      await sleep(40);
    });
    await broker.subscribe('late', async () => {
      await sleep(40);
      throw new RangeError('sensor offline');
    });
    await broker.publish('slow', 1);
    await broker.publish('late', 1);
    await waitFor(
      () => exporter.getFinishedSpans().filter((s) => s.name.startsWith('process')).length === 2,
      2000,
      () => 'spans missing',
    );
    const millis = (span: ReadableSpan): number => span.duration[0] * 1_000 + span.duration[1] / 1e6;
    const slow = byName(exporter.getFinishedSpans(), 'process slow');
    const late = byName(exporter.getFinishedSpans(), 'process late');
    expect(millis(slow)).toBeGreaterThanOrEqual(35);
    expect(slow.status.code).not.toBe(SpanStatusCode.ERROR);
    expect(millis(late)).toBeGreaterThanOrEqual(35);
    expect(late.status.code).toBe(SpanStatusCode.ERROR);
    expect(late.attributes['error.type']).toBe('RangeError');
    await broker.disconnect().catch(() => undefined);
  });

  it('emits nothing with tracing: false', async () => {
    const { provider, exporter } = tracer();
    const global = await import('@opentelemetry/api');
    global.trace.setGlobalTracerProvider(provider);
    try {
      const broker = await memoryBroker({ tracing: false });
      let headers: Record<string, string> = {};
      await broker.subscribe('t', (m) => void (headers = m.headers));
      await broker.publish('t', 1);
      await waitFor(
        () => Object.keys(headers).length > 0,
        2000,
        () => 'nothing',
      );
      expect(exporter.getFinishedSpans()).toEqual([]);
      expect(headers.traceparent).toBeUndefined();
      await broker.disconnect();
    } finally {
      global.trace.disable();
    }
  });

  it('uses the propagator option to carry context', async () => {
    const { provider } = tracer();
    const fields: string[] = [];
    const custom: TextMapPropagator = {
      inject: (ctx, carrier, setter) => {
        new W3CTraceContext().inject(ctx, carrier, setter);
        setter.set(carrier, 'x-custom-trace', 'yes');
      },
      extract: (ctx, carrier, getter) => {
        fields.push(String(getter.get(carrier, 'x-custom-trace')));
        return ctx;
      },
      fields: () => ['x-custom-trace'],
    };
    const broker = await memoryBroker({ tracing: { tracerProvider: provider, propagator: custom } });
    await broker.subscribe('t', () => undefined);
    await broker.publish('t', 1);
    await waitFor(
      () => fields.length === 1,
      2000,
      () => 'not extracted',
    );
    expect(fields).toEqual(['yes']);
    await broker.disconnect();
  });

  it('parses and writes W3C traceparent headers', () => {
    const w3c = new W3CTraceContext();
    const carrier: Record<string, string> = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'vendor=1' };
    const getter = { get: (c: Record<string, string>, k: string) => c[k], keys: (c: Record<string, string>) => Object.keys(c) };
    const ctx = w3c.extract(ROOT_CONTEXT, carrier, getter);
    const out: Record<string, string> = {};
    w3c.inject(ctx, out, { set: (c: Record<string, string>, k: string, v: string) => void (c[k] = v) });
    expect(out.traceparent).toBe(carrier.traceparent);
    expect(w3c.extract(ROOT_CONTEXT, { traceparent: 'garbage' }, getter)).toBe(ROOT_CONTEXT);
    expect(propagation).toBeDefined();
  });
});

describe('metrics', () => {
  it('records the four messaging instruments', async () => {
    const reader = new TestReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    const broker = await memoryBroker({ metrics: { meterProvider } });
    let handled = 0;
    await broker.subscribe('t', () => void handled++, { group: 'g' });
    for (let i = 0; i < 3; i++) await broker.publish('t', i);
    await waitFor(
      () => handled === 3,
      2000,
      () => String(handled),
    );
    await broker.disconnect();
    const { resourceMetrics } = await reader.collect();
    const metrics = new Map(resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).map((m) => [m.descriptor.name, m]));
    expect([...metrics.keys()].sort()).toEqual([
      'messaging.client.consumed.messages',
      'messaging.client.operation.duration',
      'messaging.client.sent.messages',
      'messaging.process.duration',
    ]);
    const metric = (name: string) => defined(metrics.get(name), name);
    const sent = defined(metric('messaging.client.sent.messages').dataPoints[0], 'a sent.messages data point');
    expect(sent.value).toBe(3);
    expect(sent.attributes).toMatchObject({ 'messaging.system': 'memory', 'messaging.destination.name': 't' });
    const consumed = defined(metric('messaging.client.consumed.messages').dataPoints[0], 'a consumed.messages data point');
    expect(consumed.value).toBe(3);
    expect(consumed.attributes['messaging.consumer.group.name']).toBe('g');
    expect(metric('messaging.process.duration').descriptor.unit).toBe('s');
  });

  it('records nothing with metrics: false', async () => {
    const reader = new TestReader();
    const global = await import('@opentelemetry/api');
    global.metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
    try {
      const broker = await memoryBroker({ metrics: false });
      await broker.publish('t', 1);
      await broker.disconnect();
      const { resourceMetrics } = await reader.collect();
      expect(resourceMetrics.scopeMetrics.flatMap((s) => s.metrics)).toEqual([]);
    } finally {
      global.metrics.disable();
    }
  });
});
