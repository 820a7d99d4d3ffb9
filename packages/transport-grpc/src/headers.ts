import { Metadata } from '@grpc/grpc-js';
import { W3CTraceContext } from '@ktransport/broker';
import type { Context, TextMapGetter, TextMapPropagator, TextMapSetter } from '@opentelemetry/api';
import { context as otelContext } from '@opentelemetry/api';

/** Reads text values of gRPC metadata for a propagator (binary `-bin` values are skipped). */
export const metadataGetter: TextMapGetter<Metadata> = {
  get: (carrier, key) => {
    const values = carrier.get(key).filter((value): value is string => typeof value === 'string');
    return values.length === 0 ? undefined : values;
  },
  keys: (carrier) => Object.keys(carrier.getMap()),
};

/** Writes text values into gRPC metadata for a propagator. */
export const metadataSetter: TextMapSetter<Metadata> = {
  set: (carrier, key, value) => carrier.set(key, value),
};

/** Options of `traceMetadata`: whose trace context to send, the metadata to add it to, and the propagator that writes it. */
export interface TraceMetadataOptions {
  /** Whose span to propagate. Default: the active context. */
  context?: Context;
  /** Added to this metadata instead of a new one. */
  metadata?: Metadata;
  /** Default: W3C Trace Context (`traceparent`, `tracestate`), as GrpcServer reads by default. */
  propagator?: TextMapPropagator;
}

/**
 * Client side: metadata carrying the trace context, so that the server's span
 * continues the caller's trace. Pass it as a call's metadata argument.
 */
export function traceMetadata(options: TraceMetadataOptions = {}): Metadata {
  const metadata = options.metadata ?? new Metadata();
  (options.propagator ?? new W3CTraceContext()).inject(options.context ?? otelContext.active(), metadata, metadataSetter);
  return metadata;
}
