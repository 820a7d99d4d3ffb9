import type { Subscription, SubscriptionLoad } from '../broker.js';

/** What a transport's `subscribe()` resolves with: see `loadedSubscription`. */
export interface LoadedSubscriptionParts {
  /** The topic or filter subscribed to, as the caller gave it. */
  readonly topic: string;
  /** Omitted from the subscription when undefined. */
  readonly group?: string | undefined;
  /** Where the live load is read: the subscription's engine, or what owns it. */
  readonly load: SubscriptionLoad;
  /** Ends the subscription the transport's way (stop or finish its engine, then release what the broker holds). */
  readonly unsubscribe: () => Promise<void>;
}

/**
 * The `Subscription` every transport returns: its topic and group, the load its
 * engine reports at the moment it is read (`running`, `queued`), and how to end it.
 */
export function loadedSubscription({ topic, group, load, unsubscribe }: LoadedSubscriptionParts): Subscription & SubscriptionLoad {
  return {
    topic,
    ...(group === undefined ? {} : { group }),
    get running() {
      return load.running;
    },
    get queued() {
      return load.queued;
    },
    unsubscribe,
  };
}
