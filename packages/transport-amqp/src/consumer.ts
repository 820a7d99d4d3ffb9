import type { DeliveryEngine, RawMessage } from '@ktransport/broker/transport';
import type { Channel, ChannelModel, ConsumeMessage, Options } from 'amqplib';
import { KEY_HEADER, receivedHeaders, topicOf } from './headers.js';

/** One channel of a subscription; deliveries are acknowledged on the channel that delivered them, while it is open. */
interface Link {
  readonly channel: Channel;
  open: boolean;
  queue: string | undefined;
  consumerTag: string | undefined;
  /** The channel error that closed it, for the error of a failed subscribe. */
  error: Error | undefined;
}

/** What a subscription is: its filter, group and queue, and where its deliveries go. */
export interface ConsumerSpec {
  readonly filter: string;
  readonly group: string | undefined;
  /**
   * The binding key of the filter on the broker's exchange; undefined for the
   * requester's reply queue, which is not bound (replies come through the
   * default exchange, by its name).
   */
  readonly binding: string | undefined;
  /**
   * The group's durable queue, or the requester's reply queue (exclusive,
   * auto-delete, named); undefined for an exclusive, server-named queue.
   */
  readonly queue: string | undefined;
  readonly prefetch: number;
  readonly engine: DeliveryEngine;
  /** Told when the channel closed while the subscription was active (a channel error, a lost connection). */
  readonly onLost: (consumer: Consumer) => void;
}

/**
 * One `subscribe()` call on the wire: a channel of its own (so that a channel
 * error of one subscription does not touch the others), `basic.qos` with its
 * prefetch, its queue declared and bound, and a consumer whose deliveries go to
 * its DeliveryEngine. Opened again on a new channel after a channel or
 * connection loss; deliveries of the lost channel are never acknowledged on
 * the new one (the broker delivers them again).
 */
export class Consumer {
  readonly spec: ConsumerSpec;
  /** Until unsubscribe or disconnect: only an active consumer is opened again. */
  active = true;
  #link: Link | undefined;

  constructor(spec: ConsumerSpec) {
    this.spec = spec;
  }

  /** The queue consumed now (server-named for a subscription without a group). */
  get queue(): string | undefined {
    return this.#link?.queue;
  }

  /** Opens a channel on `model`, declares and binds the queue, and starts consuming. */
  async open(model: ChannelModel, exchange: string): Promise<void> {
    const { spec } = this;
    const channel = await model.createChannel();
    const link: Link = { channel, open: true, queue: undefined, consumerTag: undefined, error: undefined };
    channel.on('error', (error: Error) => (link.error = error));
    channel.on('close', () => {
      link.open = false;
      if (this.#link !== link) return;
      this.#link = undefined;
      // What the engine holds from this channel is given up: the broker delivers it again.
      spec.engine.revoke(() => true);
      if (this.active) spec.onLost(this);
    });
    this.#link = link;
    try {
      await channel.prefetch(spec.prefetch, false);
      const declared = await channel.assertQueue(spec.queue ?? '', queueOptions(spec));
      link.queue = declared.queue;
      if (spec.binding !== undefined) await channel.bindQueue(declared.queue, exchange, spec.binding);
      const { consumerTag } = await channel.consume(declared.queue, (message) => this.#deliver(link, message), { noAck: false });
      link.consumerTag = consumerTag;
    } catch (error) {
      if (this.#link === link) this.#link = undefined;
      await channel.close().catch(() => undefined);
      throw link.error ?? error;
    }
  }

  #deliver(link: Link, message: ConsumeMessage | null): void {
    if (message === null) {
      // The broker cancelled the consumer (its queue was deleted): a new channel declares it again.
      void link.channel.close().catch(() => undefined);
      return;
    }
    const headers = receivedHeaders(message);
    const raw: { -readonly [K in keyof RawMessage]: RawMessage[K] } = {
      topic: topicOf(message.fields.routingKey),
      body: message.content,
      headers,
      raw: message,
    };
    const key = headers[KEY_HEADER];
    if (key !== undefined) raw.key = key;
    const id = (message.properties as { messageId?: unknown }).messageId;
    if (typeof id === 'string') raw.id = id;
    const timestamp = (message.properties as { timestamp?: unknown }).timestamp;
    if (typeof timestamp === 'number' && Number.isFinite(timestamp)) raw.timestamp = timestamp * 1000;
    this.spec.engine.push({
      message: raw,
      orderingKey: key,
      ack: () => {
        if (!link.open) return;
        try {
          link.channel.ack(message);
        } catch {
          // closed meanwhile: the broker delivers it again
        }
      },
      nack: () => {
        if (!link.open) return;
        try {
          link.channel.nack(message, false, true);
        } catch {
          // closed meanwhile: the broker delivers it again
        }
      },
    });
  }

  /** Stops the broker's deliveries to this subscription (basic.cancel), waiting at most `timeoutMs`. */
  async cancel(timeoutMs: number): Promise<void> {
    const link = this.#link;
    if (!link?.open || link.consumerTag === undefined) return;
    await bounded(link.channel.cancel(link.consumerTag), timeoutMs);
  }

  /** Closes the channel; `deleteQueue` deletes a server-named queue first. Waits at most `timeoutMs`. */
  async close(deleteQueue: boolean, timeoutMs: number): Promise<void> {
    this.active = false;
    const link = this.#link;
    this.#link = undefined;
    if (!link?.open) return;
    if (deleteQueue && link.queue !== undefined) await bounded(link.channel.deleteQueue(link.queue), timeoutMs);
    await bounded(link.channel.close(), timeoutMs);
  }
}

/** How a subscription's queue is declared: a group's durable, a reply queue exclusive and auto-delete, another exclusive. */
function queueOptions(spec: ConsumerSpec): Options.AssertQueue {
  if (spec.binding === undefined) return { exclusive: true, autoDelete: true, durable: false };
  return spec.queue === undefined ? { exclusive: true } : { durable: true };
}

/** Waits for `promise` at most `ms`; its failure is ignored (the channel or connection is going anyway). */
export async function bounded(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  await Promise.race([promise.then(noop, noop), late]);
  clearTimeout(timer);
}

function noop(): void {
  // settled
}
