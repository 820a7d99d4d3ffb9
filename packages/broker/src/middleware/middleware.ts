import type { Handler } from '../broker.js';
import type { Headers } from '../message.js';

/** Subscribe-side middleware: wraps the next handler. */
export type Middleware = (next: Handler<unknown>) => Handler<unknown>;

/** A message on its way out, already encoded: the payload is exactly what goes on the wire. */
export interface OutgoingMessage<O = unknown> {
  readonly topic: string;
  readonly payload: Uint8Array;
  /** Mutable until the transport sends it (tracing adds `traceparent` here). */
  readonly headers: Headers;
  readonly key?: string;
  /** The publish options the caller gave, including transport-specific ones. */
  readonly options: O;
}

/** Sends one encoded message; resolves once the transport accepted it. */
export type PublishFn<O = unknown> = (message: OutgoingMessage<O>) => Promise<void>;

/** Publish-side middleware: wraps the next send function. */
export type PublishMiddleware = (next: PublishFn<never>) => PublishFn<never>;

/** Composes middleware so that the first one listed runs outermost. */
export function chain(...middleware: Middleware[]): Middleware {
  return (handler) => middleware.reduceRight<Handler<unknown>>((next, mw) => mw(next), handler);
}

/** Composes publish middleware so that the first one listed runs outermost. */
export function chainPublish<O>(middleware: readonly PublishMiddleware[], send: PublishFn<O>): PublishFn<O> {
  return middleware.reduceRight<PublishFn<never>>((next, mw) => mw(next), send as PublishFn<never>) as PublishFn<O>;
}
