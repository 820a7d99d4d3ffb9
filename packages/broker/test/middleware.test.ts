import * as v from 'valibot';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  backoffDelay,
  chain,
  ConfigurationError,
  DEAD_LETTER_ERROR_MAX_BYTES,
  DEAD_LETTER_HEADER,
  DeadLetterError,
  DecodeError,
  type Handler,
  type HandlerContext,
  HandlerFailedError,
  type Headers,
  type Message,
  type Middleware,
  PublishError,
  recover,
  retry,
  timeout,
  TimeoutError,
  validation,
  ValidationError,
  deadLetter,
} from '@ktransport/broker';
import { invalidTextIndex } from '@ktransport/broker/transport';
import { waitFor } from '@ktransport/broker/testing';
import { defined, memoryBroker } from './helpers.js';

/** Runs a handler and returns what it threw, or undefined. */
const failure = async (run: () => unknown): Promise<unknown> => {
  try {
    await run();
    return undefined;
  } catch (error) {
    return error;
  }
};
const message = (body: unknown = {}): Message => ({ topic: 'devices/1/report', body, headers: { 'x-id': '1' } });
const context = (overrides: Partial<HandlerContext> = {}): HandlerContext => ({
  attempt: 1,
  filter: 'devices/+/report',
  signal: new AbortController().signal,
  payload: new Uint8Array([1, 2, 3]),
  ...overrides,
});

describe('chain', () => {
  it('runs the first middleware outermost', async () => {
    const trace: string[] = [];
    const tag =
      (name: string): Middleware =>
      (next) =>
      async (m, c) => {
        trace.push(`>${name}`);
        await next(m, c);
        trace.push(`<${name}`);
      };
    await chain(tag('a'), tag('b'))(() => void trace.push('handler'))(message(), context());
    expect(trace).toEqual(['>a', '>b', 'handler', '<b', '<a']);
  });
});

describe('retry', () => {
  it('retries a failing handler up to the attempt limit with growing delays', async () => {
    const at: number[] = [];
    const handler: Handler = () => {
      at.push(performance.now());
      throw new Error('database down');
    };
    const run = retry({ attempts: 4, initialDelayMs: 20, multiplier: 2 })(handler);
    const error = await failure(() => run(message(), context()));
    expect(error).toBeInstanceOf(HandlerFailedError);
    expect((error as HandlerFailedError).attempts).toBe(4);
    expect(((error as HandlerFailedError).cause as Error).message).toBe('database down');
    const gaps = at.slice(1).map((t, i) => t - defined(at[i], `attempt ${i + 1}`));
    expect(gaps[0]).toBeGreaterThanOrEqual(19);
    expect(gaps[1]).toBeGreaterThanOrEqual(39);
    expect(gaps[2]).toBeGreaterThanOrEqual(79);
  });

  it('passes the attempt number to the handler and stops on success', async () => {
    const seen: number[] = [];
    await retry({ attempts: 5, initialDelayMs: 1 })((_, c) => {
      seen.push(c.attempt);
      if (c.attempt < 3) throw new Error('not yet');
    })(message(), context());
    expect(seen).toEqual([1, 2, 3]);
  });

  it('does not retry non-retriable errors', async () => {
    let calls = 0;
    const run = retry({ attempts: 5, initialDelayMs: 1 })(() => {
      calls++;
      throw new DecodeError('garbage');
    });
    const error = await failure(() => run(message(), context()));
    expect(calls).toBe(1);
    expect((error as HandlerFailedError).attempts).toBe(1);
  });

  it('computes capped exponential backoff', () => {
    const policy = { attempts: 10, initialDelayMs: 100, multiplier: 3, maxDelayMs: 1000 };
    expect([1, 2, 3, 4].map((n) => backoffDelay(policy, n))).toEqual([100, 300, 900, 1000]);
    expect(backoffDelay({ attempts: 3 }, 2)).toBe(200);
  });

  it('rejects a nonsensical policy at configuration time', () => {
    expect(() => retry({ attempts: 0 })).toThrow(ConfigurationError);
  });
});

describe('deadLetter', () => {
  it('publishes the original bytes and headers with the reason, then acknowledges', async () => {
    const sent: { topic: string; payload: Uint8Array; headers: Headers }[] = [];
    const run = deadLetter('devices.dlq', (topic, payload, headers) => {
      sent.push({ topic, payload, headers });
      return Promise.resolve();
    })(
      retry({ attempts: 2, initialDelayMs: 1 })(() => {
        throw new Error('constraint violated');
      }),
    );
    await run(message(), context({ group: 'savers' }));
    expect(sent).toHaveLength(1);
    const [dead] = sent;
    expect(dead?.topic).toBe('devices.dlq');
    expect(dead?.payload).toEqual(new Uint8Array([1, 2, 3]));
    expect(dead?.headers).toMatchObject({
      'x-id': '1',
      [DEAD_LETTER_HEADER.originalTopic]: 'devices/1/report',
      [DEAD_LETTER_HEADER.error]: 'constraint violated',
      [DEAD_LETTER_HEADER.errorType]: 'Error',
      [DEAD_LETTER_HEADER.attempts]: '2',
      [DEAD_LETTER_HEADER.group]: 'savers',
    });
  });

  it('keeps the record key, and bounds and escapes the reason whatever the error quoted', async () => {
    const sent: { headers: Headers; key: string | undefined }[] = [];
    const run = deadLetter('dlq', (_topic, _payload, headers, key) => {
      sent.push({ headers, key });
      return Promise.resolve();
    })(() => {
      throw new Error(`bad byte \u0001 then ${'x'.repeat(100_000)}`);
    });
    await run({ ...message(), key: 'same-customer' }, context());
    expect(sent[0]?.key).toBe('same-customer');
    const reason = sent[0]?.headers[DEAD_LETTER_HEADER.error] ?? '';
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(DEAD_LETTER_ERROR_MAX_BYTES);
    expect(reason.startsWith('bad byte \\u0001 then xxx')).toBe(true);
    expect(invalidTextIndex(reason)).toBe(-1);
  });

  it('sends the reason headers alone when the copy with the original headers is refused for good', async () => {
    const tries: Headers[] = [];
    const reports: unknown[] = [];
    const run = deadLetter(
      'dlq',
      (_topic, _payload, headers) => {
        tries.push(headers);
        return tries.length === 1 ? Promise.reject(new PublishError('dlq', 'record too large', { retriable: false })) : Promise.resolve();
      },
      (error) => reports.push(error),
    )(() => {
      throw new Error('boom');
    });
    await run(message(), context());
    expect(tries).toHaveLength(2);
    expect(tries[0]?.['x-id']).toBe('1');
    expect(tries[1]?.['x-id']).toBeUndefined();
    expect(tries[1]).toMatchObject({ [DEAD_LETTER_HEADER.error]: 'boom', [DEAD_LETTER_HEADER.headersDropped]: 'true' });
    expect(reports).toEqual([]);
  });

  it('reports and drops a message the dead-letter topic refuses for good, instead of redelivering it forever', async () => {
    const reports: unknown[] = [];
    let tries = 0;
    const run = deadLetter(
      'dlq',
      () => {
        tries++;
        return Promise.reject(new PublishError('dlq', 'record too large', { retriable: false }));
      },
      (error) => reports.push(error),
    )(() => {
      throw new Error('boom');
    });
    await run({ ...message(), key: 'k-7', partition: 2, offset: '41' }, context());
    expect(tries).toBe(2);
    expect(reports).toHaveLength(1);
    expect(reports[0]).toBeInstanceOf(DeadLetterError);
    expect((reports[0] as DeadLetterError).message).toMatch(/devices\/1\/report \(partition 2, offset 41, key k-7\).*dlq.*record too large.*dropped/);
  });

  it('redelivers when the dead-letter publish may succeed later (retriable), even with a reporter', async () => {
    const reports: unknown[] = [];
    const run = deadLetter(
      'dlq',
      () => Promise.reject(new PublishError('dlq', 'broker down', { retriable: true })),
      (e) => reports.push(e),
    )(() => {
      throw new Error('boom');
    });
    await expect(run(message(), context())).rejects.toThrow('broker down');
    expect(reports).toEqual([]);
  });

  it('fails the message when the dead-letter topic cannot be reached, so it is not lost', async () => {
    const run = deadLetter('dlq', () => Promise.reject(new Error('dlq unreachable')))(() => {
      throw new Error('boom');
    });
    await expect(run(message(), context())).rejects.toThrow('dlq unreachable');
  });
});

describe('recover', () => {
  it('reports the error and acknowledges instead of failing', async () => {
    const reports: [unknown, Message][] = [];
    await recover((error, m) => reports.push([error, m]))(() => {
      throw new Error('bad row');
    })(message({ n: 1 }), context());
    expect(reports).toHaveLength(1);
    expect((reports[0]?.[0] as Error).message).toBe('bad row');
    expect(reports[0]?.[1].body).toEqual({ n: 1 });
  });
});

describe('timeout', () => {
  it('fails a slow attempt with a TimeoutError and aborts its signal', async () => {
    let aborted = false;
    const run = timeout(20)(async (_, c) => {
      c.signal.addEventListener('abort', () => (aborted = true));
      await new Promise((r) => setTimeout(r, 200));
    });
    await expect(run(message(), context())).rejects.toBeInstanceOf(TimeoutError);
    expect(aborted).toBe(true);
    await expect(timeout(200)(() => undefined)(message(), context())).resolves.toBeUndefined();
    expect(() => timeout(0)).toThrow(ConfigurationError);
  });

  it('is applied per attempt by the timeoutMs subscribe option', async () => {
    const broker = await memoryBroker();
    const dead: Message[] = [];
    await broker.subscribe('dlq', (m) => void dead.push(m), { codec: 'bytes' });
    await broker.subscribe('slow', () => new Promise((r) => setTimeout(r, 500)), { timeoutMs: 10, deadLetter: 'dlq' });
    await broker.publish('slow', { n: 1 });
    await waitFor(
      () => dead.length === 1,
      2000,
      () => 'not dead-lettered',
    );
    expect(dead[0]?.headers[DEAD_LETTER_HEADER.errorType]).toBe('TIMEOUT_ERROR');
    await broker.disconnect();
  });
});

describe('validation', () => {
  it('hands the schema output to the handler (zod)', async () => {
    const schema = z.object({ userId: z.coerce.number(), status: z.enum(['active', 'blocked']).default('active') });
    const seen: unknown[] = [];
    await validation(schema)((m) => void seen.push(m.body))(message({ userId: '42' }), context());
    expect(seen).toEqual([{ userId: 42, status: 'active' }]);
  });

  it('lists every issue with its path (valibot)', async () => {
    const schema = v.object({ name: v.pipe(v.string(), v.minLength(1)), reading: v.object({ value: v.number() }) });
    const run = validation(schema)(() => undefined);
    const error = await failure(() => run(message({ name: '', reading: { value: 'x' } }), context()));
    expect(error).toBeInstanceOf(ValidationError);
    const issues = (error as ValidationError).issues;
    expect(issues.map((i) => i.path)).toEqual(['name', 'reading.value']);
    expect((error as ValidationError).message).toMatch(/^body of devices\/1\/report does not match the schema: name: /);
    expect((error as ValidationError).retriable).toBe(false);
  });

  it('names the first issues in its message and counts the rest, however many a hostile body makes', async () => {
    const run = validation(z.array(z.number()))(() => undefined);
    const error = (await failure(() => run(message(Array.from({ length: 20_000 }, () => 'x')), context()))) as ValidationError;
    expect(error.issues).toHaveLength(20_000);
    expect(error.message).toMatch(/and 19990 more issue\(s\)$/);
    expect(error.message.length).toBeLessThan(3_000);
  });
});
