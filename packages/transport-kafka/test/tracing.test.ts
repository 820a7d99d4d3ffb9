import { SpanKind } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import type { Message } from '@ktransport/broker';
import { waitFor } from '@ktransport/broker/testing';
import { KafkaBroker } from '@ktransport/transport-kafka';
import { createTopic, defined, fast, KAFKA, sharedKafka, unique } from './helpers.js';

const kafka = sharedKafka();

describe('tracing across a real Kafka broker', () => {
  it('process is a child of send, with Kafka attributes', async () => {
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const broker = new KafkaBroker({ brokers: KAFKA, ...fast, tracing: { tracerProvider }, messageIds: true });
    await broker.connect();
    try {
      const topic = await createTopic(kafka.admin, unique('traced'), 3);
      const group = unique('g');
      const got: Message[] = [];
      await broker.subscribe(topic, (m) => void got.push(m), { group });
      await broker.publish(topic, { n: 1 }, { key: 'device-9' });
      await waitFor(
        () => got.length === 1 && exporter.getFinishedSpans().length >= 2,
        10_000,
        () => `spans ${exporter.getFinishedSpans().length}`,
      );
      const spans = exporter.getFinishedSpans();
      const send = defined(
        spans.find((s) => s.name === `send ${topic}`),
        'the send span',
      );
      const processed = defined(
        spans.find((s) => s.name === `process ${topic}`),
        'the process span',
      );
      expect(send.kind).toBe(SpanKind.PRODUCER);
      expect(processed.kind).toBe(SpanKind.CONSUMER);
      expect(processed.spanContext().traceId).toBe(send.spanContext().traceId);
      expect(processed.parentSpanContext?.spanId).toBe(send.spanContext().spanId);
      const received = defined(got[0], 'a received message');
      expect(received.headers.traceparent).toContain(send.spanContext().spanId);
      expect(send.attributes).toMatchObject({
        'messaging.system': 'kafka',
        'messaging.destination.name': topic,
        'messaging.operation.type': 'send',
        'messaging.kafka.message.key': 'device-9',
      });
      expect(processed.attributes).toMatchObject({
        'messaging.system': 'kafka',
        'messaging.destination.name': topic,
        'messaging.operation.type': 'process',
        'messaging.consumer.group.name': group,
        'messaging.destination.partition.id': String(received.partition),
        'messaging.kafka.offset': 0,
        'messaging.kafka.message.key': 'device-9',
        'messaging.message.id': received.id,
      });
    } finally {
      await broker.disconnect();
      await tracerProvider.shutdown();
    }
  });
});
