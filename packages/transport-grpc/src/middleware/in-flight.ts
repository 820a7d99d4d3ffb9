import type { InFlight } from '@ktransport/broker/transport';
import { observe } from '../call.js';
import type { GrpcMiddleware } from '../options.js';

/** Counts each call in `tracker` from its arrival until it ends, so that shutdown can report what it cancelled. */
export function inFlight(tracker: InFlight): GrpcMiddleware {
  return (next, method) =>
    observe(method.kind, next, () => {
      tracker.enter();
      return { end: () => tracker.leave() };
    });
}
