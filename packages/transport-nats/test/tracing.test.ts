import { context, SpanKind } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Message } from '@ktransport/broker';
import { assertReplyTrace, waitFor } from '@ktransport/broker/testing';
import { NatsBroker } from '@ktransport/transport-nats';
import { type Admin, admin, ensureNats, fast, unique } from './helpers.js';

let setup: Admin;

beforeAll(async () => {
  await ensureNats();
  setup = await admin();
}, 30_000);

afterAll(async () => {
  await setup?.close();
});

describe('tracing across the real NATS server', () => {
  it('process is a child of send through the NATS headers, with messaging.system nats', async () => {
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const broker = new NatsBroker({ ...fast, tracing: { tracerProvider } });
    await broker.connect();
    try {
      const base = unique('traced');
      await setup.stream(base);
      const topic = `${base}/devices/9`;
      const group = unique('g');
      const got: Message[] = [];
      await broker.subscribe(`${base}/devices/+`, (m) => void got.push(m), { group });
      await broker.publish(topic, { n: 1 }, { key: 'device-9' });
      await waitFor(
        () => got.length === 1 && exporter.getFinishedSpans().length >= 2,
        10_000,
        () => `spans ${exporter.getFinishedSpans().length}`,
      );
      const spans = exporter.getFinishedSpans();
      const send = spans.find((s) => s.name === `send ${topic}`);
      const processed = spans.find((s) => s.name === `process ${topic}`);
      if (!send || !processed) throw new Error(`spans: ${spans.map((s) => s.name).join(', ')}`);
      expect(send.kind).toBe(SpanKind.PRODUCER);
      expect(processed.kind).toBe(SpanKind.CONSUMER);
      expect(processed.spanContext().traceId).toBe(send.spanContext().traceId);
      expect(processed.parentSpanContext?.spanId).toBe(send.spanContext().spanId);
      const received = got[0];
      expect(received?.headers.traceparent).toContain(send.spanContext().spanId);
      expect(send.attributes).toMatchObject({
        'messaging.system': 'nats',
        'messaging.destination.name': topic,
        'messaging.operation.type': 'send',
      });
      expect(processed.attributes).toMatchObject({
        'messaging.system': 'nats',
        'messaging.destination.name': topic,
        'messaging.destination.template': `${base}/devices/+`,
        'messaging.operation.type': 'process',
        'messaging.consumer.group.name': group,
        'messaging.message.id': received?.id,
      });
      // The trace context travels as a NATS header of the stored message.
      const stored = await setup.jsm.streams.getMessage(await setup.jsm.streams.find(`${base}.devices.9`), { seq: 1 });
      expect(stored?.header.get('traceparent')).toBe(received?.headers.traceparent);
    } finally {
      await broker.disconnect();
      await tracerProvider.shutdown();
    }
  });

  describe('with a context manager (without one, a reply’s send span has no parent)', () => {
    beforeAll(() => void context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()));
    afterAll(() => void context.disable());

    it('a reply is part of the requester’s trace: its send span is a child of the request’s process span, the requester’s process span of the reply a child of that', async () => {
      const exporter = new InMemorySpanExporter();
      const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
      const broker = new NatsBroker({ ...fast, tracing: { tracerProvider } });
      await broker.connect();
      try {
        const topic = unique('traced-rr');
        await setup.stream(topic);
        let replyTo = '';
        await broker.subscribe<{ n: number }>(
          topic,
          (m) => {
            replyTo = m.headers['reply-to'] ?? '';
            return { square: m.body.n * m.body.n };
          },
          { group: unique('g') },
        );
        const reply = await broker.request<{ square: number }>(topic, { n: 6 }, { timeoutMs: 10_000 });
        expect(reply.body).toEqual({ square: 36 });
        await waitFor(
          () => exporter.getFinishedSpans().length >= 4,
          10_000,
          () => `spans ${exporter.getFinishedSpans().length}`,
        );
        expect(replyTo).toMatch(/^_INBOX\./);
        // The requester's inbox goes through the subscribe pipeline: the reply has its process span too.
        const { sendReply: answered, processReply: received } = assertReplyTrace(exporter.getFinishedSpans(), {
          topic,
          replySend: (name) => name === `send ${replyTo}`,
          replyProcess: (name) => name === `process ${replyTo}`,
        });
        expect(answered.kind).toBe(SpanKind.PRODUCER);
        expect(received.kind).toBe(SpanKind.CONSUMER);
        // The reply carries the trace context too.
        expect(reply.headers.traceparent).toContain(answered.spanContext().spanId);
      } finally {
        await broker.disconnect();
        await tracerProvider.shutdown();
      }
    });
  });
});
