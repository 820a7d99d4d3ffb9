import type { HandlerContext } from '../broker.js';
import { ConnectionError } from '../errors.js';

/**
 * A delivery between two attempts was given no slot because its subscription
 * began stopping: it goes back to the broker (nacked), neither retried nor dead-lettered.
 */
export class StoppingError extends ConnectionError {
  constructor() {
    super('the subscription began stopping while this message waited to be tried again');
  }
}

/**
 * Gives the engine's handler slot back while `wait` runs (a retry's backoff),
 * and resolves once the delivery has a slot again; rejects when the
 * subscription began stopping meanwhile. The delivery's ordering key stays busy
 * throughout, so nothing newer of it overtakes.
 */
export type YieldSlot = (wait: Promise<void>) => Promise<void>;

/** Where the pipeline puts the engine's YieldSlot on a handler context (not part of the public context). */
export const YIELD_SLOT: unique symbol = Symbol('ktransport.yieldSlot');

/** A handler context that may carry the engine's YieldSlot. */
export type SlotContext = HandlerContext & { readonly [YIELD_SLOT]?: YieldSlot };

/** Waits for `wait`, giving the slot back meanwhile when the context came from an engine. */
export function withoutSlot(context: HandlerContext, wait: Promise<void>): Promise<void> {
  const yieldSlot = (context as SlotContext)[YIELD_SLOT];
  return yieldSlot ? yieldSlot(wait) : wait;
}
