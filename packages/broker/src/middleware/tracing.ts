import type { Attributes, TextMapPropagator, TracerProvider } from '@opentelemetry/api';
import { INVALID_SPAN_CONTEXT, isSpanContextValid, context as otelContext, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { HandlerContext } from '../broker.js';
import { errorType } from '../errors.js';
import { HEADER, type Headers, type Message } from '../message.js';
import type { Middleware, PublishMiddleware } from './middleware.js';
import { W3CTraceContext } from './propagation.js';

/** Options of the tracing middleware (`tracingConsumer`, `tracingPublisher`). */
export interface TracingOptions {
  /** `messaging.system`: `mqtt`, `kafka`, `memory`. */
  system: string;
  /** Default: the global tracer provider. */
  tracerProvider?: TracerProvider;
  /** Default: W3C Trace Context in the message headers. */
  propagator?: TextMapPropagator;
}

const TRACER_NAME = '@ktransport/broker';
const headerSetter = { set: (carrier: Headers, key: string, value: string) => void (carrier[key] = value) };
const headerGetter = {
  get: (carrier: Headers, key: string) => carrier[key],
  keys: (carrier: Headers) => Object.keys(carrier),
};

/**
 * A span that records nothing and carries no trace to continue: what the no-op
 * tracer of the API returns when no SDK is registered. There is nothing to
 * record, inject or make active, so the middleware steps aside for it.
 */
function inert(span: Span): boolean {
  if (span.isRecording()) return false;
  const spanContext = span.spanContext();
  // The no-op tracer hands out the API's INVALID_SPAN_CONTEXT itself: known invalid without testing its ids.
  return spanContext === INVALID_SPAN_CONTEXT || !isSpanContextValid(spanContext);
}

/**
 * Producer side: one `send {topic}` PRODUCER span per publish, its context
 * injected into the outgoing headers so the consumer can continue the trace.
 */
export function tracingPublisher(options: TracingOptions): PublishMiddleware {
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(TRACER_NAME);
  const propagator = options.propagator ?? new W3CTraceContext();
  return (next) => (message) => {
    const attributes: Attributes = {
      'messaging.system': options.system,
      'messaging.destination.name': message.topic,
      'messaging.operation.name': 'send',
      'messaging.operation.type': 'send',
      'messaging.message.body.size': message.payload.byteLength,
    };
    if (message.key !== undefined && options.system === 'kafka') attributes['messaging.kafka.message.key'] = message.key;
    const id = message.headers[HEADER.messageId];
    if (id !== undefined) attributes['messaging.message.id'] = id;
    const span = tracer.startSpan(`send ${message.topic}`, { kind: SpanKind.PRODUCER, attributes });
    if (inert(span)) return next(message);
    const active = trace.setSpan(otelContext.active(), span);
    propagator.inject(active, message.headers, headerSetter);
    return traced(span, () => otelContext.with(active, next, undefined, message));
  };
}

/**
 * Consumer side: one `process {topic}` CONSUMER span per delivery, a child of
 * the producer's context extracted from the headers, active while the handler runs.
 */
export function tracingConsumer(options: TracingOptions): Middleware {
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(TRACER_NAME);
  const propagator = options.propagator ?? new W3CTraceContext();
  return (next) => (message, context) => {
    const parent = propagator.extract(ROOT_CONTEXT, message.headers, headerGetter);
    const span = tracer.startSpan(
      `process ${message.topic}`,
      { kind: SpanKind.CONSUMER, attributes: consumerAttributes(options.system, message, context) },
      parent,
    );
    // Still run in the extracted context: the handler must not inherit whatever context delivered the message.
    if (inert(span)) return otelContext.with(parent, next, undefined, message, context);
    const active = trace.setSpan(parent, span);
    return traced(span, () => otelContext.with(active, next, undefined, message, context));
  };
}

/**
 * Runs `work`, marks the span failed if it throws or rejects, and ends it. Not
 * an async function: with a context manager on AsyncLocalStorage every promise
 * carries a hook, so a traced message makes no more of them than it needs.
 */
function traced(span: Span, work: () => unknown): Promise<void> {
  let result: unknown;
  try {
    result = work();
  } catch (error) {
    fail(span, error);
    span.end();
    return Promise.reject(error);
  }
  if (typeof (result as PromiseLike<unknown> | undefined)?.then !== 'function') {
    span.end();
    return Promise.resolve();
  }
  // A native promise is used as it is; any other thenable is adopted.
  return Promise.resolve(result).then(
    () => span.end(),
    (error: unknown) => {
      fail(span, error);
      span.end();
      throw error;
    },
  );
}

function consumerAttributes(system: string, message: Message, context: HandlerContext): Attributes {
  const attributes: Attributes = {
    'messaging.system': system,
    'messaging.destination.name': message.topic,
    'messaging.operation.name': 'process',
    'messaging.operation.type': 'process',
    'messaging.message.body.size': context.payload.byteLength,
  };
  if (context.filter !== message.topic) attributes['messaging.destination.template'] = context.filter;
  if (context.group) attributes['messaging.consumer.group.name'] = context.group;
  if (message.id !== undefined) attributes['messaging.message.id'] = message.id;
  if (message.partition !== undefined) attributes['messaging.destination.partition.id'] = String(message.partition);
  if (system === 'kafka') {
    if (message.key !== undefined) attributes['messaging.kafka.message.key'] = message.key;
    if (message.offset !== undefined) attributes['messaging.kafka.offset'] = Number(message.offset);
  }
  return attributes;
}

function fail(span: Span, error: unknown): void {
  span.setAttribute('error.type', errorType(error));
  if (error instanceof Error) span.recordException(error);
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}
