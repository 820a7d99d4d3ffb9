import { headerText } from './text.js';

/** Options shared by every ktransport error. */
export interface BrokerErrorOptions {
  cause?: unknown;
  /** Whether repeating the same operation may succeed (a retry policy honours this). */
  retriable?: boolean;
}

/** Base class of every error ktransport raises; `code` names the kind for logs and metrics. */
export class BrokerError extends Error {
  readonly retriable: boolean;
  readonly code: string = 'BROKER_ERROR';

  constructor(message: string, options: BrokerErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.retriable = options.retriable ?? false;
  }
}

/** The broker could not be reached, refused the credentials, or the connection is closed. */
export class ConnectionError extends BrokerError {
  override readonly code: string = 'CONNECTION_ERROR';
  constructor(message: string, options: BrokerErrorOptions = {}) {
    super(message, { retriable: true, ...options });
  }
}

/** The broker refused the credentials; retrying with the same ones will not help. */
export class AuthenticationError extends ConnectionError {
  override readonly code = 'AUTHENTICATION_ERROR';
  constructor(message: string, options: BrokerErrorOptions = {}) {
    super(message, { ...options, retriable: false });
  }
}

/** The transport did not accept a published message. */
export class PublishError extends BrokerError {
  override readonly code: string = 'PUBLISH_ERROR';
  readonly topic: string;
  constructor(topic: string, message: string, options: BrokerErrorOptions = {}) {
    super(message, options);
    this.topic = topic;
  }
}

/** A subscription could not be established. */
export class SubscribeError extends BrokerError {
  override readonly code = 'SUBSCRIBE_ERROR';
  readonly topic: string;
  constructor(topic: string, message: string, options: BrokerErrorOptions = {}) {
    super(message, options);
    this.topic = topic;
  }
}

/**
 * The broker's TLS certificate did not verify (unknown CA, expired, wrong host
 * name) or it refused ours: retrying with the same settings will not help.
 */
export class CertificateError extends ConnectionError {
  override readonly code = 'CERTIFICATE_ERROR';
  constructor(message: string, options: BrokerErrorOptions = {}) {
    super(message, { ...options, retriable: false });
  }
}

/** A payload could not be encoded or decoded by its codec. Never retriable. */
export class DecodeError extends BrokerError {
  override readonly code = 'DECODE_ERROR';
  constructor(message: string, options: Omit<BrokerErrorOptions, 'retriable'> = {}) {
    super(message, { ...options, retriable: false });
  }
}

/** One problem reported by a Standard Schema validator. */
export interface ValidationIssue {
  readonly message: string;
  readonly path: string;
}

/** Issues a ValidationError's message lists; `issues` keeps them all. */
const LISTED_ISSUES = 10;

/** A decoded body did not satisfy the subscription's schema. Never retriable. */
export class ValidationError extends BrokerError {
  override readonly code = 'VALIDATION_ERROR';
  readonly issues: readonly ValidationIssue[];
  constructor(topic: string, issues: readonly ValidationIssue[]) {
    // A hostile body can fail with thousands of issues: the message names the first few, each bounded.
    const listed = issues.slice(0, LISTED_ISSUES).map((i) => headerText(i.path ? `${i.path}: ${i.message}` : i.message, 200));
    const more = issues.length > LISTED_ISSUES ? `; and ${issues.length - LISTED_ISSUES} more issue(s)` : '';
    super(`body of ${topic} does not match the schema: ${listed.join('; ')}${more}`, { retriable: false });
    this.issues = issues;
  }
}

/** Invalid configuration (unknown codec, duplicate subscription, bad option). Raised eagerly. */
export class ConfigurationError extends BrokerError {
  override readonly code = 'CONFIGURATION_ERROR';
}

/** A handler or an operation did not finish within its time limit. */
export class TimeoutError extends BrokerError {
  override readonly code = 'TIMEOUT_ERROR';
  constructor(message: string, options: BrokerErrorOptions = {}) {
    super(message, { retriable: true, ...options });
  }
}

/** Shutdown could not drain every in-flight handler within its time limit. */
export class DrainTimeoutError extends TimeoutError {
  /** Handlers still running when the time limit passed. */
  readonly pending: number;
  /** Messages received but not started when stopping began (never started, left unacknowledged). */
  readonly queued: number;
  constructor(pending: number, timeoutMs: number, queued = 0) {
    const left = queued > 0 ? ` (and ${queued} queued message(s) were not started)` : '';
    super(`${pending} handler(s) still running after ${timeoutMs} ms of draining${left}; their messages were not acknowledged`, {
      retriable: false,
    });
    this.pending = pending;
    this.queued = queued;
  }
}

/**
 * The responder of a request failed: its handler threw (after its retries) or
 * its reply could not be encoded. Carries the responder's error type and
 * message, bounded and escaped as they travelled in the reply's headers, never
 * its stack. Not retriable: whether asking again helps is the caller's call.
 */
export class RemoteError extends BrokerError {
  override readonly code = 'REMOTE_ERROR';
  /** The topic the request was sent to. */
  readonly topic: string;
  /** The responder's error type (`error.code` of a ktransport error, the error's `name` otherwise): `TypeError`, `VALIDATION_ERROR`. */
  readonly errorType: string;
  /** The responder's error message, without its stack. */
  readonly remoteMessage: string;
  constructor(topic: string, errorType: string, remoteMessage: string) {
    super(`the responder on ${headerText(topic, 200)} failed with ${errorType}: ${remoteMessage}`, { retriable: false });
    this.topic = topic;
    this.errorType = errorType;
    this.remoteMessage = remoteMessage;
  }
}

/** Whether an error may succeed when retried. Unknown errors (from user handlers) are retriable. */
export function isRetriable(error: unknown): boolean {
  return error instanceof BrokerError ? error.retriable : true;
}

/** A short type name for `error.type` span attributes and metrics. */
export function errorType(error: unknown): string {
  if (error instanceof BrokerError) return error.code;
  if (error instanceof Error) return error.name || 'Error';
  return '_OTHER';
}
