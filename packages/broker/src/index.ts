export type { StandardSchemaV1 } from '@standard-schema/spec';
export type { Headers, Message } from './message.js';
export { HEADER } from './message.js';
export type {
  BasePublishOptions,
  BaseSubscribeOptions,
  CodecName,
  CodecNames,
  TransportPublishOptions,
  TransportSubscribeOptions,
  Broker,
  ConnectionState,
  Handler,
  HandlerContext,
  ObservableConnection,
  PublishOptions,
  RequestOptions,
  Requester,
  RetryPolicy,
  SubscribeOptions,
  Subscription,
  SubscriptionLoad,
} from './broker.js';
export { supportsRequest } from './broker.js';
export {
  AuthenticationError,
  BrokerError,
  CertificateError,
  type BrokerErrorOptions,
  ConfigurationError,
  ConnectionError,
  DecodeError,
  DrainTimeoutError,
  errorType,
  isRetriable,
  PublishError,
  RemoteError,
  SubscribeError,
  TimeoutError,
  ValidationError,
  type ValidationIssue,
} from './errors.js';
export { type Codec, mediaType } from './codec/codec.js';
export { CodecRegistry, defaultCodecs } from './codec/registry.js';
export { jsonCodec } from './codec/json.js';
export { textCodec } from './codec/text.js';
export { bytesCodec } from './codec/bytes.js';
export { msgpackCodec } from './codec/msgpack.js';
export { protobufCodec, type ProtobufCodecOptions, type ProtobufType } from './codec/protobuf.js';
export { chain, chainPublish, type Middleware, type OutgoingMessage, type PublishFn, type PublishMiddleware } from './middleware/middleware.js';
export { tracingConsumer, tracingPublisher, type TracingOptions } from './middleware/tracing.js';
export { W3CTraceContext } from './middleware/propagation.js';
export { metricsConsumer, metricsPublisher, type MetricsOptions } from './middleware/metrics.js';
export { backoffDelay, HandlerFailedError, retry } from './middleware/retry.js';
export { DEAD_LETTER_ERROR_MAX_BYTES, DEAD_LETTER_HEADER, deadLetter, DeadLetterError, type DeadLetterPublish } from './middleware/dead-letter.js';
export { type ErrorReporter, recover } from './middleware/recover.js';
export { timeout } from './middleware/timeout.js';
export { REPLY_ERROR_MAX_BYTES, REPLY_HEADER } from './middleware/reply.js';
export { validation } from './middleware/validation.js';
export { decode } from './middleware/decode.js';
export { BROKER, Subscribe, type SubscribeDeclaration, subscriptionsOf } from './di/subscribe.js';
export { Publishes, type PublishesDeclaration, type PublishesOptions, publicationsOf } from './di/publishes.js';
export { BrokerServer, type BrokerServerOptions, type Server, type ServiceResolver } from './server.js';
export { App, type AppOptions, StopError } from './app.js';
export type { CommonBrokerOptions } from './pipeline.js';
export { MemoryBroker, type MemoryBrokerOptions } from './memory/broker.js';
