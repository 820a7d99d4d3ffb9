import { AuthenticationError, BrokerError, CertificateError, ConnectionError, PublishError, SubscribeError, TimeoutError } from '@ktransport/broker';
import { headerText, isCertificateError } from '@ktransport/broker/transport';
import { ErrorReply, TimeoutError as RedisTimeoutError } from '@redis/client';

/**
 * A publish to a key that holds another Redis type than a stream (Redis'
 * `WRONGTYPE` reply). Not retriable: the key has to be deleted or renamed first.
 */
export class WrongTypeError extends PublishError {
  override readonly code = 'WRONG_TYPE';
}

/**
 * Redis answered a command with an error reply that is not about the connection
 * (`OOM`, `NOPERM`, `LOADING`, `READONLY`, ...). `reply` is the reply's first
 * word; `retriable` says whether the same command may succeed later (`OOM`,
 * `LOADING`, `BUSY`, `TRYAGAIN`, `MASTERDOWN`, `READONLY` may; the others not).
 */
export class RedisReplyError extends BrokerError {
  override readonly code = 'REDIS_REPLY';
  /** The error reply's code, e.g. `OOM`, `NOPERM`, `ERR`. */
  readonly reply: string;
  constructor(reply: string, message: string, options: { cause?: unknown; retriable?: boolean } = {}) {
    super(message, options);
    this.reply = reply;
  }
}

/** Error replies after which the same command may succeed later. */
const RETRIABLE_REPLIES = new Set(['OOM', 'LOADING', 'BUSY', 'TRYAGAIN', 'MASTERDOWN', 'READONLY', 'CLUSTERDOWN']);
const AUTH_REPLIES = new Set(['WRONGPASS', 'NOAUTH']);
/** Names of @redis/client's errors about the connection rather than the command. */
const CONNECTION_ERRORS = new Set([
  'ConnectionTimeoutError',
  'SocketTimeoutError',
  'ClientClosedError',
  'ClientOfflineError',
  'DisconnectsClientError',
  'SocketClosedUnexpectedlyError',
  'ReconnectStrategyError',
]);

interface ErrorShape {
  readonly name?: unknown;
  readonly message?: unknown;
  readonly code?: unknown;
  readonly cause?: unknown;
  readonly originalError?: unknown;
  readonly socketError?: unknown;
}

/** The error and what it wraps (cause, a reconnect strategy's original and socket errors), outermost first. */
function chain(error: unknown): ErrorShape[] {
  const out: ErrorShape[] = [];
  const todo: unknown[] = [error];
  while (todo.length > 0 && out.length < 8) {
    const e = todo.shift();
    if (e === null || typeof e !== 'object') continue;
    const shape = e as ErrorShape;
    out.push(shape);
    todo.push(shape.originalError, shape.socketError, shape.cause);
  }
  return out;
}

/** The error reply's code (`WRONGTYPE`, `OOM`, ...) of the error or what it wraps, if Redis answered with one. */
export function replyCode(error: unknown): string | undefined {
  for (const e of chain(error)) {
    if (e instanceof ErrorReply) {
      return /^[A-Z]+/.exec(e.message)?.[0] ?? 'ERR';
    }
  }
  return undefined;
}

export function isAuthFailure(error: unknown): boolean {
  const code = replyCode(error);
  return code !== undefined && AUTH_REPLIES.has(code);
}

export function isConnectionFailure(error: unknown): boolean {
  return chain(error).some(
    (e) =>
      CONNECTION_ERRORS.has(e.constructor.name) ||
      CONNECTION_ERRORS.has(String(e.name)) ||
      (typeof e.code === 'string' && /^(E[A-Z]+|ERR_SOCKET|ERR_TLS)/.test(e.code) && e.code !== 'ERR'),
  );
}

/** The messages of the error and what it wraps, with the password masked; bounded. */
export function describe(error: unknown, redact: (text: string) => string): string {
  const messages = chain(error)
    .map((e) => (typeof e.message === 'string' ? e.message : ''))
    .filter(Boolean);
  const unique = [...new Set(messages)];
  return headerText(redact(unique.length > 0 ? unique.join(': ') : String(error)), 1_000);
}

/** Why connecting failed: refused credentials, a certificate that did not verify, or no connection. */
export function toConnectionError(error: unknown, where: string, redact: (text: string) => string): BrokerError {
  if (error instanceof BrokerError) return error;
  const text = describe(error, redact);
  if (isAuthFailure(error)) return new AuthenticationError(`Redis at ${where} refused the credentials: ${text}`, { cause: error });
  if (chain(error).some((e) => isCertificateError(e))) return new CertificateError(`TLS verification with Redis at ${where} failed: ${text}`, { cause: error });
  return new ConnectionError(`cannot connect to Redis at ${where}: ${text}`, { cause: error });
}

/** A command's error reply as a typed error (never for connection failures). */
export function toReplyError(error: unknown, what: string, redact: (text: string) => string): RedisReplyError {
  const code = replyCode(error) ?? 'ERR';
  return new RedisReplyError(code, `${what}: Redis answered ${describe(error, redact)}`, { cause: error, retriable: RETRIABLE_REPLIES.has(code) });
}

/** An XADD that Redis did not confirm. */
export function toPublishError(topic: string, key: string, error: unknown, where: string, redact: (text: string) => string): BrokerError {
  if (error instanceof BrokerError) return error;
  const name = headerText(topic, 200);
  if (isTimeout(error)) {
    return new TimeoutError(`publish to ${name} was not written to the connection in time; it was not sent`, { cause: error });
  }
  const code = replyCode(error);
  if (code === undefined || isAuthFailure(error)) {
    const cause = toConnectionError(error, where, redact);
    return new PublishError(topic, `publish to ${name} failed: ${cause.message}`, { cause, retriable: cause.retriable });
  }
  if (code === 'WRONGTYPE') {
    return new WrongTypeError(topic, `cannot publish to ${name}: the key "${headerText(key, 200)}" holds another Redis type than a stream (WRONGTYPE)`, {
      cause: error,
    });
  }
  const reply = toReplyError(error, `publish to ${name} failed`, redact);
  return new PublishError(topic, reply.message, { cause: reply, retriable: reply.retriable });
}

/** A subscription that could not be made (its group not created, its stream not read). */
export function toSubscribeError(topic: string, error: unknown, where: string, redact: (text: string) => string): BrokerError {
  if (error instanceof BrokerError) return error;
  const name = headerText(topic, 200);
  const code = replyCode(error);
  if (code === undefined || isAuthFailure(error)) return toConnectionError(error, where, redact);
  if (code === 'WRONGTYPE') {
    return new SubscribeError(topic, `cannot subscribe to ${name}: its key holds another Redis type than a stream (WRONGTYPE)`, {
      cause: toReplyError(error, `cannot subscribe to ${name}`, redact),
    });
  }
  const reply = toReplyError(error, `cannot subscribe to ${name}`, redact);
  return new SubscribeError(topic, reply.message, { cause: reply, retriable: reply.retriable });
}

function isTimeout(error: unknown): boolean {
  return chain(error).some((e) => e instanceof RedisTimeoutError);
}
