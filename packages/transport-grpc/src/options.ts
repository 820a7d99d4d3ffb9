import type { ServerCredentials, ServerOptions, ServiceDefinition, UntypedHandleCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { ObservableConnection } from '@ktransport/broker';
import type { TextMapPropagator, TracerProvider } from '@opentelemetry/api';

/** How a method streams, from its definition's `requestStream`/`responseStream`. */
export type MethodKind = 'unary' | 'clientStream' | 'serverStream' | 'bidi';

/** The method a middleware wraps. */
export interface MethodInfo {
  /** `/package.Service/Method`, as on the wire. */
  readonly path: string;
  /** `package.Service` (OpenTelemetry `rpc.service`). */
  readonly service: string;
  /** `Method` (OpenTelemetry `rpc.method`). */
  readonly method: string;
  readonly kind: MethodKind;
}

/**
 * Wraps the handler of one method; called once per method when the server
 * starts. The handler it gets and returns has the shape grpc-js gives `kind`
 * (`(call, callback)` for unary and client streaming, `(call)` otherwise).
 */
export type GrpcMiddleware = (next: UntypedHandleCall, method: MethodInfo) => UntypedHandleCall;

/** A service to serve: a definition (from @grpc/proto-loader or generated code) and its handlers. */
export interface GrpcService {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

/**
 * What `grpc.health.v1.Health` reports: the connections (brokers, databases
 * that implement ObservableConnection) the service depends on. The overall
 * status (service `''`) and each served service are SERVING while the server
 * runs and all their dependencies are `connected`, NOT_SERVING otherwise, so
 * that a load balancer or orchestrator stops sending calls that could not
 * complete; Watch streams get every change.
 */
export interface HealthOptions {
  /** Connections the whole server needs: `''` and every service are SERVING only while all are `connected`. */
  dependencies?: readonly ObservableConnection[];
  /**
   * Further connections per service name (`package.Service`), on top of
   * `dependencies`. A name listed here is known to Check and Watch even if no
   * service of that name is added.
   */
  services?: Readonly<Record<string, readonly ObservableConnection[]>>;
}

/**
 * Where the SERVER span of each call goes, and how the caller's trace context
 * is read from the request metadata so that the span continues the caller's
 * trace.
 */
export interface GrpcTracingOptions {
  /** Default: the global tracer provider. */
  tracerProvider?: TracerProvider;
  /** Reads the parent context from request metadata. Default: W3C Trace Context (`traceparent`, `tracestate`). */
  propagator?: TextMapPropagator;
}

/**
 * Options of `GrpcServer`: where to listen and with which credentials, the
 * services and their middleware, tracing, the health service and how long
 * `stop()` waits for calls. Every option has a default: `new GrpcServer()`
 * listens on a free loopback port, with tracing and health on.
 */
export interface GrpcServerOptions {
  /** `host:port` to listen on; port 0 picks a free port (read it from `port` after start). Default `127.0.0.1:0`. */
  address?: string;
  /** Default: insecure (plaintext). */
  credentials?: ServerCredentials;
  /** Name shown in App logs and errors. Default `grpc`. */
  name?: string;
  /** Services to serve; more can be added with `addService` before start. */
  services?: readonly GrpcService[];
  /** Handler middleware, run inside tracing; the first listed runs outermost. Not applied to the health service. */
  middleware?: readonly GrpcMiddleware[];
  /** Passed to the grpc-js `Server`: channel options (`grpc.max_receive_message_length`, ...) and `interceptors`. */
  serverOptions?: ServerOptions;
  /** One SERVER span per call. Default on, using the global tracer provider; `false` disables. */
  tracing?: boolean | GrpcTracingOptions;
  /** The `grpc.health.v1.Health` service. Default on with no dependencies; `false` disables. */
  health?: boolean | HealthOptions;
  /** How long `stop()` lets in-flight calls finish before cancelling them. Default 10,000 ms. */
  shutdownTimeoutMs?: number;
}
