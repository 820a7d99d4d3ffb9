export { GrpcServer } from './server.js';
export type { GrpcMiddleware, GrpcServerOptions, GrpcService, GrpcTracingOptions, HealthOptions, MethodInfo, MethodKind } from './options.js';
export { BindError, ShutdownTimeoutError } from './errors.js';
export { traceMetadata, type TraceMetadataOptions } from './headers.js';
export { healthDefinition } from './health/definition.js';
export type { ServingStatus } from './health/health.js';
