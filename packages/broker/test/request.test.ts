import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  type Broker,
  BrokerServer,
  ConfigurationError,
  ConnectionError,
  type Message,
  RemoteError,
  REPLY_HEADER,
  Subscribe,
  supportsRequest,
  TimeoutError,
  ValidationError,
} from '@ktransport/broker';
import { assertReplyTrace, sleep, waitFor } from '@ktransport/broker/testing';
import { memoryBroker } from './helpers.js';

describe('request–reply (memory)', () => {
  it('supportsRequest tells a requester from a plain Broker', async () => {
    const broker = await memoryBroker();
    expect(supportsRequest(broker)).toBe(true);
    const plain: Broker = {
      system: 'x',
      connect: async () => {},
      disconnect: async () => {},
      publish: async () => {},
      subscribe: () => Promise.reject(new Error('no')),
    };
    expect(supportsRequest(plain)).toBe(false);
    await broker.disconnect();
  });

  it('validates and types the reply with the schema; a reply that fails it rejects with a ValidationError', async () => {
    const broker = await memoryBroker();
    await broker.subscribe<{ n: number }>('square', (m) => ({ square: m.body.n * m.body.n }));
    await broker.subscribe('bad', () => ({ square: 'many' }));
    const Square = z.object({ square: z.number() });
    const reply = await broker.request('square', { n: 4 }, { schema: Square, timeoutMs: 2_000 });
    const square: number = reply.body.square;
    expect(square).toBe(16);
    await expect(broker.request('bad', { n: 4 }, { schema: Square, timeoutMs: 2_000 })).rejects.toBeInstanceOf(ValidationError);
    await broker.disconnect();
  });

  it('answers a request that fails to decode or validate with a RemoteError naming the failure, not a dead letter', async () => {
    const broker = await memoryBroker();
    const dead: Message[] = [];
    await broker.subscribe('dlq', (m) => void dead.push(m));
    await broker.subscribe('strict', (m) => m.body, { schema: z.object({ id: z.string() }), deadLetter: 'dlq' });
    const error = await broker.request('strict', { id: 7 }, { timeoutMs: 2_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RemoteError);
    expect((error as RemoteError).errorType).toBe('VALIDATION_ERROR');
    expect((error as RemoteError).remoteMessage).toMatch(/^body of strict does not match the schema: id: /);
    await sleep(50);
    expect(dead).toEqual([]);
    // A fire-and-forget publish that fails is dead-lettered as before.
    await broker.publish('strict', { id: 7 });
    await waitFor(
      () => dead.length === 1,
      2_000,
      () => 'not dead-lettered',
    );
    expect(dead[0]?.headers[REPLY_HEADER.errorType]).toBeUndefined();
    await broker.disconnect();
  });

  it('drops a reply whose correlation id nobody waits for', async () => {
    const broker = await memoryBroker();
    await broker.subscribe('echo', async (m) => {
      const replyTo = m.headers[REPLY_HEADER.replyTo] ?? '';
      // A stray reply first: a foreign correlation id, then none at all.
      await broker.publish(replyTo, 'stray', { headers: { [REPLY_HEADER.correlationId]: 'not-a-request' } });
      await broker.publish(replyTo, 'stray');
      return 'mine';
    });
    const reply = await broker.request('echo', null, { timeoutMs: 2_000 });
    expect(reply.body).toBe('mine');
    await broker.disconnect();
  });

  it('checks its options, and fails when not connected', async () => {
    const broker = await memoryBroker();
    await expect(broker.request('t', 1, { timeoutMs: 0 })).rejects.toBeInstanceOf(ConfigurationError);
    await expect(broker.request('t', 1, { replyCodec: 'nope' as 'json' })).rejects.toBeInstanceOf(ConfigurationError);
    await broker.disconnect();
    await expect(broker.request('t', 1, { timeoutMs: 1_000 })).rejects.toBeInstanceOf(ConnectionError);
  });

  it('answers from a @Subscribe method through BrokerServer', async () => {
    class Squares {
      @Subscribe('squares')
      square(message: Message<{ n: number }>): { square: number } {
        return { square: message.body.n ** 2 };
      }

      @Subscribe('cubes')
      async cube(message: Message<{ n: number }>): Promise<{ cube: number }> {
        await sleep(1);
        return { cube: message.body.n ** 3 };
      }
    }
    const broker = await memoryBroker();
    const server = new BrokerServer({ broker }).register(new Squares());
    await server.start();
    expect((await broker.request('squares', { n: 3 }, { timeoutMs: 2_000 })).body).toEqual({ square: 9 });
    expect((await broker.request('cubes', { n: 3 }, { timeoutMs: 2_000 })).body).toEqual({ cube: 27 });
    await server.stop();
  });

  describe('replySchema', () => {
    const Total = z.object({ total: z.number(), currency: z.string().default('EUR') });

    it('validates the reply and sends the schema’s output', async () => {
      const broker = await memoryBroker();
      await broker.subscribe<{ prices: number[] }>('sum', (m) => ({ total: m.body.prices.reduce((a, b) => a + b, 0) }), { replySchema: Total });
      // No schema on the requester's side: the default came from the responder's reply schema.
      const reply = await broker.request('sum', { prices: [1, 2, 3] }, { timeoutMs: 2_000 });
      expect(reply.body).toEqual({ total: 6, currency: 'EUR' });
      await broker.disconnect();
    });

    it('answers a reply that fails it with a RemoteError VALIDATION_ERROR, and reports it', async () => {
      const reported: unknown[] = [];
      const broker = await memoryBroker({ onError: (error) => void reported.push(error) });
      const dead: Message[] = [];
      await broker.subscribe('dlq', (m) => void dead.push(m));
      let calls = 0;
      await broker.subscribe(
        'sum',
        () => {
          calls += 1;
          return { total: 'six' };
        },
        { replySchema: Total, deadLetter: 'dlq', retry: { attempts: 3, initialDelayMs: 1 } },
      );
      const error = await broker.request('sum', { prices: [1] }, { timeoutMs: 2_000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RemoteError);
      expect((error as RemoteError).errorType).toBe('VALIDATION_ERROR');
      expect((error as RemoteError).remoteMessage).toMatch(/^body of the reply to sum does not match the schema: total: /);
      expect(reported).toHaveLength(1);
      expect(reported[0]).toBeInstanceOf(ValidationError);
      expect((reported[0] as ValidationError).issues.map((i) => i.path)).toEqual(['total']);
      // The handler ran once (a wrong reply is not retried) and the request was answered, not dead-lettered.
      expect(calls).toBe(1);
      await sleep(50);
      expect(dead).toEqual([]);
      await broker.disconnect();
    });

    it('bounds the error reply of a reply with many issues', async () => {
      const broker = await memoryBroker({ onError: () => undefined });
      const Wide = z.object(Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`field${'x'.repeat(50)}${i}`, z.number()])));
      await broker.subscribe('wide', () => ({}), { replySchema: Wide });
      const error = await broker.request('wide', null, { timeoutMs: 2_000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RemoteError);
      expect(Buffer.byteLength((error as RemoteError).remoteMessage)).toBeLessThanOrEqual(1_024);
      await broker.disconnect();
    });

    it('leaves fire-and-forget messages and handlers that return nothing alone', async () => {
      const reported: unknown[] = [];
      const broker = await memoryBroker({ onError: (error) => void reported.push(error) });
      const dead: Message[] = [];
      await broker.subscribe('dlq', (m) => void dead.push(m));
      const seen: unknown[] = [];
      await broker.subscribe(
        'sum',
        (m) => {
          seen.push(m.body);
          return { total: 'not a number' };
        },
        { replySchema: Total, deadLetter: 'dlq' },
      );
      await broker.subscribe('quiet', () => undefined, { replySchema: Total });
      await broker.publish('sum', 1);
      await waitFor(
        () => seen.length === 1,
        2_000,
        () => 'not delivered',
      );
      await expect(broker.request('quiet', null, { timeoutMs: 100 })).rejects.toBeInstanceOf(TimeoutError);
      await sleep(50);
      expect(dead).toEqual([]);
      expect(reported).toEqual([]);
      await broker.disconnect();
    });

    it('checks the reply of a @Subscribe method through BrokerServer', async () => {
      const Square = z.object({ n: z.number() });
      const Result = z.object({ square: z.number().int() });
      class Squares {
        @Subscribe('squares', { schema: Square, replySchema: Result })
        square(message: Message<z.infer<typeof Square>>): z.input<typeof Result> {
          return { square: message.body.n ** 2 };
        }
      }
      const broker = await memoryBroker({ onError: () => undefined });
      const server = new BrokerServer({ broker }).register(new Squares());
      await server.start();
      expect((await broker.request('squares', { n: 3 }, { timeoutMs: 2_000 })).body).toEqual({ square: 9 });
      const error = await broker.request('squares', { n: 1.5 }, { timeoutMs: 2_000 }).catch((e: unknown) => e);
      expect((error as RemoteError).errorType).toBe('VALIDATION_ERROR');
      expect((error as RemoteError).remoteMessage).toMatch(/reply to squares/);
      await server.stop();
    });
  });

  describe('tracing', () => {
    beforeAll(() => void context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()));
    afterAll(() => void context.disable());

    it('keeps the reply in the requester’s trace: send request → process → send reply → process reply', async () => {
      const exporter = new InMemorySpanExporter();
      const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
      const broker = await memoryBroker({ tracing: { tracerProvider: provider } });
      await broker.subscribe('ask', async () => {
        await sleep(1);
        return 'answer';
      });
      const caller = provider.getTracer('test').startSpan('caller');
      await context.with(trace.setSpan(context.active(), caller), () => broker.request('ask', 'question', { timeoutMs: 2_000 }));
      caller.end();
      await waitFor(
        () => exporter.getFinishedSpans().length >= 5,
        2_000,
        () =>
          exporter
            .getFinishedSpans()
            .map((s) => s.name)
            .join(', '),
      );
      const { send } = assertReplyTrace(exporter.getFinishedSpans(), {
        topic: 'ask',
        replySend: (name) => name.startsWith('send ktransport/reply/'),
        replyProcess: (name) => name.startsWith('process ktransport/reply/'),
      });
      expect(send.spanContext().traceId).toBe(caller.spanContext().traceId);
      expect(send.parentSpanContext?.spanId).toBe(caller.spanContext().spanId);
      await broker.disconnect();
    });
  });
});

describe('assertReplyTrace (conformance kit)', () => {
  const span = (name: string, spanId: string, parent?: string, traceId = 't1') => ({
    name,
    spanContext: () => ({ traceId, spanId }),
    ...(parent === undefined ? {} : { parentSpanContext: { spanId: parent } }),
  });
  const names = { topic: 'ask', replySend: (n: string) => n === 'send r', replyProcess: (n: string) => n === 'process r' };

  it('returns the four spans of an unbroken chain and fails on a broken link, another trace or a missing span', () => {
    const chain = [span('send ask', 'a'), span('process ask', 'b', 'a'), span('send r', 'c', 'b'), span('process r', 'd', 'c')];
    expect(assertReplyTrace(chain, names).processReply.spanContext().spanId).toBe('d');
    expect(() => assertReplyTrace([...chain.slice(0, 3), span('process r', 'd', 'a')], names)).toThrow(/reply’s process span is not a child/);
    expect(() => assertReplyTrace([...chain.slice(0, 2), span('send r', 'c', 'b', 't2'), span('process r', 'd', 'c')], names)).toThrow(
      /not in the request’s trace/,
    );
    expect(() => assertReplyTrace(chain.slice(0, 3), names)).toThrow(/no span for the reply’s processing/);
  });
});
