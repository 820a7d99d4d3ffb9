import { status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, type UntypedHandleCall } from '@grpc/grpc-js';
import type { MethodKind } from './options.js';

/** How a call ended: the status code sent (or the reason none was), and the error behind it. */
export interface CallOutcome {
  readonly code: status;
  readonly error?: unknown;
}

/** What a wrapper does around one call: `run` invokes the handler (default: directly), `end` hears the outcome once. */
export interface CallObserver {
  run?: (invoke: () => unknown) => unknown;
  end(outcome: CallOutcome): void;
}

/** The parts of a server call that every kind of call has. */
export type AnyServerCall = Pick<ServerUnaryCall<unknown, unknown>, 'metadata' | 'cancelled' | 'getPath' | 'getPeer' | 'getDeadline' | 'on'>;
type Respond = sendUnaryData<unknown>;
type Responding = (call: ServerUnaryCall<unknown, unknown>, callback: Respond) => unknown;
type Streaming = (call: ServerWritableStream<unknown, unknown>) => unknown;

/**
 * Wraps a grpc-js handler so that `begin` runs when a call arrives and its
 * observer's `end` runs exactly once when the call ends: on the callback
 * (unary, client streaming), when the response stream finishes or fails
 * (server streaming, bidi), on cancellation or deadline, or when the handler
 * throws. A handler that returns a promise which rejects fails the call as if
 * the error had been passed to the callback (or emitted on the stream), so an
 * `async` handler cannot leave a call hanging or the rejection unhandled.
 */
export function observe(kind: MethodKind, handler: UntypedHandleCall, begin: (call: AnyServerCall) => CallObserver): UntypedHandleCall {
  if (kind === 'unary' || kind === 'clientStream') {
    const wrapped: Responding = (call, callback) => {
      const observer = begin(call);
      const end = once(observer);
      let responded = false;
      const respond: Respond = (error, value, trailer, flags) => {
        if (responded) return;
        responded = true;
        end(error ? { code: codeOf(error), error } : { code: status.OK });
        callback(error, value, trailer, flags);
      };
      onCancel(call, end);
      invoke(
        observer,
        end,
        () => (handler as Responding)(call, respond),
        (error) => respond(asStatusError(error)),
      );
    };
    return wrapped as UntypedHandleCall;
  }
  const wrapped: Streaming = (call) => {
    const observer = begin(call);
    const end = once(observer);
    let failure: unknown;
    call.on('error', (error: unknown) => void (failure ??= error));
    call.on('finish', () => end(failure === undefined ? { code: status.OK } : { code: codeOf(failure), error: failure }));
    call.on('close', () => end(failure === undefined ? { code: status.CANCELLED } : { code: codeOf(failure), error: failure }));
    onCancel(call, end);
    invoke(
      observer,
      end,
      () => (handler as Streaming)(call),
      (error) => {
        if (!call.writableEnded && !call.destroyed) call.emit('error', asStatusError(error));
      },
    );
  };
  return wrapped as UntypedHandleCall;
}

function invoke(observer: CallObserver, end: (outcome: CallOutcome) => void, call: () => unknown, reject: (error: unknown) => void): void {
  let result: unknown;
  try {
    result = observer.run ? observer.run(call) : call();
  } catch (error) {
    // grpc-js answers a throwing handler with UNKNOWN; rethrow so it still does.
    end({ code: status.UNKNOWN, error });
    throw error;
  }
  if (isPromiseLike(result)) result.then(undefined, reject);
}

function once(observer: CallObserver): (outcome: CallOutcome) => void {
  let ended = false;
  return (outcome) => {
    if (ended) return;
    ended = true;
    observer.end(outcome);
  };
}

/** A call ended by the client or by its deadline; grpc-js has then already answered or given up. */
function onCancel(call: AnyServerCall, end: (outcome: CallOutcome) => void): void {
  call.on('cancelled', () => {
    const deadline = call.getDeadline();
    const passed = (deadline instanceof Date ? deadline.getTime() : deadline) <= Date.now();
    end({ code: passed ? status.DEADLINE_EXCEEDED : status.CANCELLED });
  });
}

/** The status grpc-js derives from an error: its integer `code`, else UNKNOWN. */
export function codeOf(error: unknown): status {
  if (typeof error === 'object' && error !== null && 'code' in error && Number.isInteger(error.code)) return error.code as status;
  return status.UNKNOWN;
}

/** grpc-js reads `message`/`code` off what it is given, so it must be an object. */
function asStatusError(error: unknown): Error {
  return typeof error === 'object' && error !== null ? (error as Error) : new Error(String(error));
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** The handler alone, with only the rejected-promise handling of `observe`: the innermost layer around user code. */
export function guard(kind: MethodKind, handler: UntypedHandleCall): UntypedHandleCall {
  return observe(kind, handler, () => ({ end: () => undefined }));
}
