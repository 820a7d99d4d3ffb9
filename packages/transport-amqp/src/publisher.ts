import { randomUUID } from 'node:crypto';
import { BrokerError, ConnectionError, PublishError } from '@ktransport/broker';
import { asBuffer, headerText, type OutgoingMessage } from '@ktransport/broker/transport';
import type { ChannelModel, ConfirmChannel, Message, Options } from 'amqplib';
import { InvalidHeaderError, PayloadTooLargeError, UnroutableError } from './errors.js';
import { publishProperties, replyQueue, routingKey } from './headers.js';
import type { AmqpPublishOptions, ResolvedOptions } from './options.js';

/**
 * Publish option of the broker's own reply publishes: the topic is the name of
 * a queue (a request's `reply-to`), and the message goes through the default
 * exchange (`""`) with that name as routing key, as AMQP RPC clients expect.
 */
export const TO_QUEUE: unique symbol = Symbol('ktransport.amqp.toQueue');

/** Options of `Publisher.send`: the public ones and the broker's own. */
export type SendOptions = AmqpPublishOptions & { readonly [TO_QUEUE]?: boolean };

/** One publish waiting for the broker's confirm. */
interface Pending {
  readonly topic: string;
  readonly size: number;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  /** When publishTimeoutMs runs out for it (`performance.now()` time). */
  readonly deadline: number;
  /** A mandatory publish's message id, while it may still be returned. */
  messageId: string | undefined;
  /** The broker returned it (basic.return): its confirm rejects with this. */
  returned: UnroutableError | undefined;
}

/** The confirm channel of one connection and what its closing told. */
interface Link {
  readonly channel: ConfirmChannel;
  /** The channel error that closed it (a 406 for a message over `max_message_size`, ...). */
  error: Error | undefined;
  closed: boolean;
}

/** RabbitMQ's text for a message over `max_message_size`: "message size 2000 is larger than configured max size 1024". */
const TOO_LARGE = /message size (\d+) is larger than/;

/**
 * Publishes on one ConfirmChannel per connection: every publish resolves on
 * the broker's ack and rejects on its nack, on a return of a mandatory message,
 * when the channel or connection closes first, or after `publishTimeoutMs`.
 * A channel closed by a channel error (one bad publish) is opened again for
 * the next publish; the connection and the subscriptions are not affected.
 */
export class Publisher {
  readonly #options: ResolvedOptions;
  #model: ChannelModel | undefined;
  #link: Link | undefined;
  #opening: Promise<Link> | undefined;
  /** Publishes waiting for a confirm, in the order they were made: the order of their deadlines too. */
  readonly #pending = new Set<Pending>();
  /** One timer for every publish's deadline: the earliest one. */
  #sweep: NodeJS.Timeout | undefined;
  /** Mandatory publishes by message id, to match a basic.return with its publish. */
  readonly #mandatory = new Map<string, Pending[]>();

  constructor(options: ResolvedOptions) {
    this.#options = options;
  }

  /**
   * Uses a new connection: opens the confirm channel and declares the exchange
   * (or checks an `amq.` one). Publishes are taken only once that is done.
   */
  async attach(model: ChannelModel): Promise<void> {
    this.#model = undefined;
    this.#link = undefined;
    this.#opening = undefined;
    const link = await this.#open(model);
    const { exchange } = this.#options;
    if (exchange.startsWith('amq.')) await link.channel.checkExchange(exchange);
    else await link.channel.assertExchange(exchange, 'topic', { durable: true });
    this.#model = model;
    if (!link.closed) this.#link = link;
  }

  /** The connection is gone: every publish waiting for a confirm rejects with `error`. */
  detach(error: Error): void {
    this.#model = undefined;
    this.#link = undefined;
    this.#opening = undefined;
    for (const pending of [...this.#pending]) this.#settle(pending, error);
  }

  /**
   * Publishes on the exchange (routing key from the topic), or with the
   * `TO_QUEUE` option on the default exchange straight to the queue the topic
   * names.
   */
  send(message: OutgoingMessage<SendOptions>): Promise<void> {
    const { topic, payload, headers, options } = message;
    const exchange = options[TO_QUEUE] ? '' : this.#options.exchange;
    let key: string;
    let properties: Options.Publish;
    try {
      key = options[TO_QUEUE] ? replyQueue(topic) : routingKey(topic);
      if (payload.byteLength > this.#options.maxMessageBytes) throw new PayloadTooLargeError(topic, payload.byteLength, this.#options.maxMessageBytes);
      properties = publishProperties(topic, headers, message.key);
      if (options.mandatory) {
        properties.mandatory = true;
        // A returned message is matched with its publish by message id: one is made when there is none.
        properties.messageId ??= randomUUID();
      }
    } catch (error) {
      return Promise.reject(error);
    }
    if (!this.#model) return Promise.reject(new ConnectionError(`cannot publish to ${topic}: the connection to ${this.#options.displayUrl} is not open`));
    return new Promise<void>((resolve, reject) => {
      const pending: Pending = {
        topic,
        size: payload.byteLength,
        resolve,
        reject,
        deadline: performance.now() + this.#options.publishTimeoutMs,
        messageId: undefined,
        returned: undefined,
      };
      this.#pending.add(pending);
      this.#sweep ??= setTimeout(this.#expire, this.#options.publishTimeoutMs);
      const link = this.#link;
      if (link) this.#write(link, pending, exchange, key, asBuffer(payload), properties);
      else {
        this.#channel().then(
          (opened) => this.#write(opened, pending, exchange, key, asBuffer(payload), properties),
          (error: unknown) => this.#settle(pending, this.#failure(topic, undefined, error)),
        );
      }
    });
  }

  #write(link: Link, pending: Pending, exchange: string, key: string, content: Buffer, properties: Options.Publish): void {
    if (!this.#pending.has(pending)) return;
    if (properties.mandatory && properties.messageId !== undefined) {
      pending.messageId = properties.messageId;
      const same = this.#mandatory.get(pending.messageId);
      if (same) same.push(pending);
      else this.#mandatory.set(pending.messageId, [pending]);
    }
    try {
      link.channel.publish(exchange, key, content, properties, (error: unknown) => {
        if (!error) this.#settle(pending, pending.returned);
        else if (error instanceof Error && error.message === 'message nacked') {
          this.#settle(pending, new PublishError(pending.topic, `the broker refused (nacked) the message for ${pending.topic}`, { retriable: true }));
        } else this.#settle(pending, this.#failure(pending.topic, link, error, pending.size));
      });
    } catch (error) {
      // amqplib throws before writing: a headers table over its 64 KiB encoding buffer, or a closed channel.
      const failure =
        error instanceof RangeError
          ? new InvalidHeaderError(pending.topic, '', 'table', 'too-long', 'the client can encode (64 KiB)')
          : this.#failure(pending.topic, link, error);
      this.#settle(pending, failure);
    }
  }

  /** Settles a publish once: out of the lists, its timer cleared. */
  #settle(pending: Pending, error: Error | undefined): void {
    if (!this.#pending.delete(pending)) return;
    if (this.#pending.size === 0 && this.#sweep !== undefined) {
      clearTimeout(this.#sweep);
      this.#sweep = undefined;
    }
    if (pending.messageId !== undefined) {
      const same = this.#mandatory.get(pending.messageId);
      const index = same?.indexOf(pending) ?? -1;
      if (same && index >= 0) same.splice(index, 1);
      if (same?.length === 0) this.#mandatory.delete(pending.messageId);
    }
    if (error) pending.reject(error);
    else pending.resolve();
  }

  /** Rejects the publishes whose deadline passed, and waits for the next deadline. */
  readonly #expire = (): void => {
    this.#sweep = undefined;
    const now = performance.now();
    for (const pending of this.#pending) {
      if (pending.deadline > now) break;
      this.#settle(
        pending,
        new PublishError(
          pending.topic,
          `the broker did not confirm the message for ${pending.topic} within publishTimeoutMs (${this.#options.publishTimeoutMs} ms)`,
          {
            retriable: true,
          },
        ),
      );
    }
    const [next] = this.#pending;
    if (next) this.#sweep = setTimeout(this.#expire, Math.max(1, next.deadline - now));
  };

  /** What a publish that was not confirmed meets: a channel error (too large, ...) or a lost connection. */
  #failure(topic: string, link: Link | undefined, error: unknown, size?: number): BrokerError {
    if (error instanceof BrokerError) return error;
    const cause = link?.error ?? error;
    const text = headerText(cause instanceof Error ? cause.message : String(cause), 500);
    if (link?.error) {
      const tooLarge = TOO_LARGE.exec(text);
      if (tooLarge && size !== undefined && Number(tooLarge[1]) === size) return new PayloadTooLargeError(topic, size, undefined, { cause });
      return new PublishError(topic, `the channel closed before the broker confirmed the message for ${topic}: ${text}`, { cause, retriable: true });
    }
    return new ConnectionError(`the broker did not confirm the message for ${topic}: ${text}`, { cause });
  }

  /** The open confirm channel, opened again after a channel error closed it. */
  #channel(): Promise<Link> {
    if (this.#link) return Promise.resolve(this.#link);
    const model = this.#model;
    if (!model) return Promise.reject(new ConnectionError(`the connection to ${this.#options.displayUrl} is not open`));
    this.#opening ??= this.#open(model).finally(() => (this.#opening = undefined));
    return this.#opening;
  }

  async #open(model: ChannelModel): Promise<Link> {
    const channel = await model.createConfirmChannel();
    const link: Link = { channel, error: undefined, closed: false };
    channel.on('error', (error: Error) => (link.error = error));
    channel.on('close', () => {
      link.closed = true;
      if (this.#link === link) this.#link = undefined;
    });
    channel.on('return', (message: Message) => this.#returned(message));
    if (this.#model === model) this.#link = link;
    return link;
  }

  /** basic.return: the mandatory publish with this message id gets an UnroutableError when its confirm comes. */
  #returned(message: Message): void {
    const id: unknown = message.properties.messageId;
    if (typeof id !== 'string') return;
    const pending = this.#mandatory.get(id)?.find((p) => p.returned === undefined);
    if (!pending) return;
    const { replyCode, replyText } = message.fields as { replyCode?: unknown; replyText?: unknown };
    const reason = `${typeof replyCode === 'number' ? replyCode : 312} ${typeof replyText === 'string' ? replyText : 'NO_ROUTE'}`;
    pending.returned = new UnroutableError(pending.topic, reason);
  }
}
