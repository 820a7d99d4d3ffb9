import assert from 'node:assert/strict';

/** What the reply-trace check reads of a finished span; the OpenTelemetry SDK's `ReadableSpan` is one. */
export interface FinishedSpan {
  /** The span name, e.g. `send orders`. */
  readonly name: string;
  /** The span's own trace and span ids. */
  spanContext(): { readonly traceId: string; readonly spanId: string };
  /** The parent's ids; absent for a root span. */
  readonly parentSpanContext?: { readonly spanId: string };
}

/** The four spans of one request and its reply, each the parent of the next. */
export interface ReplyTrace<S extends FinishedSpan> {
  readonly send: S;
  readonly process: S;
  readonly sendReply: S;
  readonly processReply: S;
}

/** Which finished spans are the request's (`send <topic>`, `process <topic>`) and its reply's. */
export interface ReplyTraceNames {
  /** The request's topic, as its span names carry it. */
  readonly topic: string;
  /** Whether a span name is the responder's send of the reply (`send <reply address>`). */
  readonly replySend: (name: string) => boolean;
  /** Whether a span name is the requester's processing of the reply (`process <reply topic>`). */
  readonly replyProcess: (name: string) => boolean;
}

/**
 * Asserts that a request and its reply form one trace (request–reply's tracing
 * promise): send request → process request → send reply → process reply, all
 * in one trace and each span the parent of the next. Returns the four spans
 * for a test's own further checks (its caller span, kinds, attributes).
 */
export function assertReplyTrace<S extends FinishedSpan>(spans: readonly S[], { topic, replySend, replyProcess }: ReplyTraceNames): ReplyTrace<S> {
  const find = (what: string, test: (name: string) => boolean): S => {
    const span = spans.find((s) => test(s.name));
    assert.ok(span, `no span for ${what} among: ${spans.map((s) => s.name).join(', ')}`);
    return span;
  };
  const send = find(`send ${topic}`, (name) => name === `send ${topic}`);
  const process = find(`process ${topic}`, (name) => name === `process ${topic}`);
  const sendReply = find('the reply’s send', replySend);
  const processReply = find('the reply’s processing', replyProcess);
  const traceId = send.spanContext().traceId;
  for (const span of [process, sendReply, processReply]) assert.equal(span.spanContext().traceId, traceId, `${span.name} is not in the request’s trace`);
  assert.equal(process.parentSpanContext?.spanId, send.spanContext().spanId, 'the request’s process span is not a child of its send span');
  assert.equal(sendReply.parentSpanContext?.spanId, process.spanContext().spanId, 'the reply’s send span is not a child of the request’s process span');
  assert.equal(processReply.parentSpanContext?.spanId, sendReply.spanContext().spanId, 'the reply’s process span is not a child of its send span');
  return { send, process, sendReply, processReply };
}
