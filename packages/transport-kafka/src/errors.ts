import { AuthenticationError, BrokerError, type BrokerErrorOptions, CertificateError, ConnectionError, PublishError, SubscribeError } from '@ktransport/broker';
import { isCertificateError } from '@ktransport/broker/transport';
import type { ResolvedOptions } from './options.js';

/**
 * The topic does not exist and the brokers (or `allowAutoTopicCreation: false`)
 * did not create it. Retriable, as Kafka classifies it: the topic may be created
 * later (a message whose dead-letter topic is missing is delivered again until it
 * exists, never dropped).
 */
export class UnknownTopicError extends BrokerError {
  override readonly code = 'UNKNOWN_TOPIC';
  readonly topic: string;
  constructor(topic: string, message: string, options: BrokerErrorOptions = {}) {
    super(message, { retriable: true, ...options });
    this.topic = topic;
  }
}

/** What the error functions need of the options: where the brokers are and how to mask secrets. */
type ErrorContext = Pick<ResolvedOptions, 'brokers' | 'redact'>;

/** What kafkajs errors carry: a class name, a protocol error type and a cause chain. */
interface KafkaJsErrorShape {
  readonly name?: unknown;
  readonly type?: unknown;
  readonly message?: unknown;
  readonly retriable?: unknown;
  readonly cause?: unknown;
  readonly errors?: unknown;
}

const AUTH_TYPES = new Set(['SASL_AUTHENTICATION_FAILED', 'ILLEGAL_SASL_STATE', 'UNSUPPORTED_SASL_MECHANISM']);
const CONNECTION_NAMES = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSBrokerNotFound',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSLockTimeout',
]);
const REBALANCE_TYPES = new Set(['REBALANCE_IN_PROGRESS', 'NOT_COORDINATOR_FOR_GROUP', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID']);
/** Producer states after which the idempotent producer's sequence numbers can no longer be trusted. */
const SEQUENCE_TYPES = new Set(['OUT_OF_ORDER_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH', 'INVALID_PRODUCER_ID_MAPPING']);

/** The error and its causes, outermost first (bounded against cycles). */
function chain(error: unknown): KafkaJsErrorShape[] {
  const out: KafkaJsErrorShape[] = [];
  for (let e = error, i = 0; e !== null && typeof e === 'object' && i < 8; i++) {
    const shape = e as KafkaJsErrorShape;
    out.push(shape);
    if (Array.isArray(shape.errors)) for (const inner of shape.errors as unknown[]) out.push(...chain(inner));
    e = shape.cause;
  }
  return out;
}

function has(error: unknown, test: (e: KafkaJsErrorShape) => boolean): boolean {
  return chain(error).some(test);
}

/**
 * The messages of the error and its causes (kafkajs wraps the one that names the
 * actual problem in retry errors), with secrets masked by `redact`.
 */
export function describe(error: unknown, redact: (text: string) => string = (text) => text): string {
  const links = chain(error);
  const messages = links.map((e) => (typeof e.message === 'string' ? e.message : '')).filter(Boolean);
  const unique = [...new Set(messages)];
  return redact(unique.length > 0 ? unique.join(': ') : String(error));
}

export const isAuthFailure = (error: unknown): boolean => has(error, (e) => e.name === 'KafkaJSSASLAuthenticationError' || AUTH_TYPES.has(String(e.type)));
export const isConnectionFailure = (error: unknown): boolean => has(error, (e) => CONNECTION_NAMES.has(String(e.name)));
export const isUnknownTopic = (error: unknown): boolean => has(error, (e) => e.type === 'UNKNOWN_TOPIC_OR_PARTITION');
/** The topic is unknown or has no leader yet: just created (or being auto-created) and not in the metadata. */
export const isTopicNotReady = (error: unknown): boolean => has(error, (e) => e.type === 'UNKNOWN_TOPIC_OR_PARTITION' || e.type === 'LEADER_NOT_AVAILABLE');
export const isRebalance = (error: unknown): boolean => has(error, (e) => REBALANCE_TYPES.has(String(e.type)));
export const isSequenceFailure = (error: unknown): boolean => has(error, (e) => SEQUENCE_TYPES.has(String(e.type)));
/** The brokers refused a request because a record (or the records of one partition) is larger than the topic accepts. */
export const isTooLarge = (error: unknown): boolean => has(error, (e) => SIZE_TYPES.has(String(e.type)));

/** Refusals of a record batch for its size: `max.message.bytes` of the topic, or the log segment size. */
const SIZE_TYPES = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);

/**
 * Whether a failure of `connect()` or `subscribe()` may pass when tried again:
 * not for refused credentials, certificates that do not verify, or options the
 * brokers refuse (a session timeout out of range); a missing topic only while
 * the brokers may still create it.
 */
export function isStartRetriable(error: unknown, allowAutoTopicCreation: boolean): boolean {
  if (error instanceof BrokerError) return error.retriable;
  if (isAuthFailure(error) || isCertificateError(error)) return false;
  if (isUnknownTopic(error)) return allowAutoTopicCreation;
  return isConnectionFailure(error) || chain(error).some((e) => e.retriable === true);
}

/** The broker could not be reached, its certificate did not verify, or it refused the credentials. */
export function toConnectionError(error: unknown, options: ErrorContext): BrokerError {
  if (error instanceof BrokerError) return error;
  const where = options.brokers.join(',');
  const text = describe(error, options.redact);
  if (isAuthFailure(error)) return new AuthenticationError(`Kafka at ${where} refused the credentials: ${text}`, { cause: error });
  if (isCertificateError(error)) return new CertificateError(`TLS verification with Kafka at ${where} failed: ${text}`, { cause: error });
  return new ConnectionError(`cannot connect to Kafka at ${where}: ${text}`, { cause: error });
}

/** A publish that the brokers did not acknowledge. */
export function toPublishError(topic: string, error: unknown, options: ErrorContext): BrokerError {
  if (error instanceof BrokerError) return error;
  if (isAuthFailure(error) || isCertificateError(error) || isConnectionFailure(error)) {
    const cause = toConnectionError(error, options);
    return new PublishError(topic, `publish to ${topic} failed: ${cause.message}`, { cause, retriable: cause.retriable });
  }
  const text = describe(error, options.redact);
  if (isUnknownTopic(error)) return new UnknownTopicError(topic, `topic ${topic} does not exist and was not created: ${text}`, { cause: error });
  if (isTooLarge(error)) {
    return new PublishError(topic, `publish to ${topic} failed: the message is larger than the topic accepts (its max.message.bytes): ${text}`, {
      cause: error,
      retriable: false,
    });
  }
  const retriable = chain(error).some((e) => e.retriable === true);
  return new PublishError(topic, `publish to ${topic} failed: ${text}`, { cause: error, retriable });
}

/** A subscription that could not join its group. */
export function toSubscribeError(topic: string, error: unknown, options: ErrorContext): BrokerError {
  if (error instanceof BrokerError) return error;
  if (isAuthFailure(error) || isCertificateError(error)) return toConnectionError(error, options);
  const text = describe(error, options.redact);
  if (isUnknownTopic(error)) return new UnknownTopicError(topic, `topic ${topic} does not exist and was not created: ${text}`, { cause: error });
  const retriable = isConnectionFailure(error) || chain(error).some((e) => e.retriable === true);
  return new SubscribeError(topic, `cannot subscribe to ${topic}: ${text}`, { cause: error, retriable });
}

/** A topic administration request (create topics) was refused. */
export class AdminError extends BrokerError {
  override readonly code = 'ADMIN_ERROR';
}
