import { status } from '@grpc/grpc-js';
import { W3CTraceContext } from '@ktransport/broker';
import type { Span } from '@opentelemetry/api';
import { context as otelContext, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { type CallOutcome, observe } from '../call.js';
import { metadataGetter } from '../headers.js';
import type { GrpcMiddleware, GrpcTracingOptions } from '../options.js';

const TRACER_NAME = '@ktransport/transport-grpc';

/** Codes that are the server's fault (OpenTelemetry RPC conventions); the others leave the span status unset. */
const SERVER_ERRORS = new Set<status>([status.UNKNOWN, status.DEADLINE_EXCEEDED, status.UNIMPLEMENTED, status.INTERNAL, status.UNAVAILABLE, status.DATA_LOSS]);

/**
 * One SERVER span per call, named `package.Service/Method`, a child of the
 * context extracted from the request metadata and active while the handler
 * runs, so that work the handler starts (a broker publish) joins the trace.
 * Streaming calls are covered until their response stream ends.
 */
export function tracing(options: GrpcTracingOptions = {}): GrpcMiddleware {
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(TRACER_NAME);
  const propagator = options.propagator ?? new W3CTraceContext();
  return (next, method) =>
    observe(method.kind, next, (call) => {
      const parent = propagator.extract(ROOT_CONTEXT, call.metadata, metadataGetter);
      const span = tracer.startSpan(
        `${method.service}/${method.method}`,
        { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.service': method.service, 'rpc.method': method.method } },
        parent,
      );
      const active = trace.setSpan(parent, span);
      return {
        run: (invoke) => otelContext.with(active, invoke),
        end: (outcome) => finish(span, outcome),
      };
    });
}

function finish(span: Span, { code, error }: CallOutcome): void {
  span.setAttribute('rpc.grpc.status_code', code);
  if (code !== status.OK) {
    span.setAttribute('error.type', status[code] ?? String(code));
    if (SERVER_ERRORS.has(code)) {
      if (error instanceof Error) span.recordException(error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : status[code] });
    }
  }
  span.end();
}
