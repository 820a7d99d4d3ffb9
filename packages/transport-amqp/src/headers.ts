import { isUtf8 } from 'node:buffer';
import { ConfigurationError, HEADER, type Headers, REPLY_HEADER } from '@ktransport/broker';
import { assertFilter, assertPublishTopic, headerText } from '@ktransport/broker/transport';
import type { ConsumeMessage, Options } from 'amqplib';
import { InvalidHeaderError, type InvalidTextReason, InvalidTopicError } from './errors.js';

/** Header that carries `PublishOptions.key` (AMQP has no record key), as on MQTT. */
export const KEY_HEADER = 'message-key';

/** AMQP short strings (routing keys, header names, content type, message id) hold at most 255 bytes. */
const SHORT_STRING = 255;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** Why a short string cannot be sent, or undefined when it can. */
function shortStringProblem(text: unknown): InvalidTextReason | undefined {
  if (typeof text !== 'string') return 'not-a-string';
  if (text.length > SHORT_STRING) return 'too-long';
  if (PRINTABLE_ASCII.test(text)) return undefined;
  if (!wellFormed(text)) return 'unpaired-surrogate';
  return Buffer.byteLength(text) > SHORT_STRING ? 'too-long' : undefined;
}

/**
 * The routing key of a ktransport topic: `/` becomes `.`. A topic with `.` or
 * `*` is refused (they are the routing key's separator and wildcard, and a
 * subscriber's filter could not tell them apart), and so is one over 255 UTF-8
 * bytes. Throws InvalidTopicError (or the core's PublishError for wildcards).
 */
export function routingKey(topic: string): string {
  assertPublishTopic(topic);
  if (topic.includes('.') || topic.includes('*')) {
    throw new InvalidTopicError(topic, 'reserved-character', 'has "." or "*", which AMQP routing keys reserve; use "/" between levels');
  }
  const problem = shortStringProblem(topic);
  if (problem) throw new InvalidTopicError(topic, problem, String(SHORT_STRING));
  return topic.replaceAll('/', '.');
}

/**
 * The binding key of an MQTT-style filter: `/` becomes `.`, `+` becomes `*`,
 * `#` stays `#`. Throws ConfigurationError for a filter AMQP cannot carry.
 */
export function bindingKey(filter: string): string {
  assertFilter(filter);
  if (filter.includes('.') || filter.includes('*')) {
    throw new ConfigurationError(
      `invalid filter "${headerText(filter, 200)}": "." and "*" are reserved by AMQP binding keys; use "/" between levels and "+" for one level`,
    );
  }
  if (shortStringProblem(filter))
    throw new ConfigurationError(`invalid filter "${headerText(filter, 200)}": a binding key is at most 255 UTF-8 bytes of well-formed text`);
  return filter.replaceAll('/', '.').replaceAll('+', '*');
}

/** The ktransport topic of a received routing key: `.` becomes `/` (a `/` a foreign publisher put there stays). */
export function topicOf(routingKey: string): string {
  return routingKey.replaceAll('.', '/');
}

/**
 * The durable queue of a group: `{group}:{filter}` (group `billing`, filter
 * `orders/+` → `billing:orders/+`). A group may not contain `:` (so that two
 * pairs never share a name) nor start with `amq.` (reserved by the broker).
 */
export function groupQueue(group: string, filter: string): string {
  if (typeof group !== 'string' || group.length === 0 || group.includes(':') || group.startsWith('amq.')) {
    throw new ConfigurationError(`invalid group "${headerText(String(group), 200)}": it must be non-empty, without ":", and not start with "amq."`);
  }
  const name = `${group}:${filter}`;
  if (shortStringProblem(name))
    throw new ConfigurationError(`the queue name "${headerText(name, 300)}" of group and filter is not a name of at most 255 UTF-8 bytes`);
  return name;
}

/**
 * The name of the queue a reply goes to (the `reply-to` of a request), as the
 * routing key of a publish on the default exchange: any well-formed text of at
 * most 255 UTF-8 bytes (an AMQP short string). Throws InvalidTopicError.
 */
export function replyQueue(replyTo: string): string {
  const problem = shortStringProblem(replyTo);
  if (problem) throw new InvalidTopicError(String(replyTo), problem, String(SHORT_STRING));
  return replyTo;
}

/**
 * AMQP publish properties for outgoing headers: `content-type` becomes the
 * contentType property, `message-id` the messageId property, `reply-to` the
 * replyTo property and `correlation-id` the correlationId property
 * (request–reply), the key the `message-key` header, every other header an
 * entry of the headers table (`traceparent` and `tracestate` included). An
 * empty `reply-to` asks for no reply and is left out. Every name and value is
 * checked first: what AMQP cannot carry throws InvalidHeaderError.
 */
export function publishProperties(topic: string, headers: Headers, key: string | undefined): Options.Publish {
  const properties: Options.Publish = { persistent: true, timestamp: Math.floor(Date.now() / 1000) };
  const table: Record<string, string> = {};
  for (const name in headers) {
    const value: unknown = headers[name];
    if (name === HEADER.contentType || name === HEADER.messageId || name === REPLY_HEADER.replyTo || name === REPLY_HEADER.correlationId) {
      const problem = shortStringProblem(value);
      if (problem) throw new InvalidHeaderError(topic, name, 'value', problem, String(SHORT_STRING));
      if (name === HEADER.contentType) properties.contentType = value as string;
      else if (name === HEADER.messageId) properties.messageId = value as string;
      else if (name === REPLY_HEADER.correlationId) properties.correlationId = value as string;
      else if (value !== '') properties.replyTo = value as string;
      continue;
    }
    const problem = shortStringProblem(name);
    if (problem) throw new InvalidHeaderError(topic, name, 'name', problem, String(SHORT_STRING));
    if (typeof value !== 'string') throw new InvalidHeaderError(topic, name, 'value', 'not-a-string');
    if (!wellFormed(value)) throw new InvalidHeaderError(topic, name, 'value', 'unpaired-surrogate');
    table[name] = value;
  }
  if (key !== undefined) {
    if (typeof key !== 'string') throw new InvalidHeaderError(topic, KEY_HEADER, 'value', 'not-a-string');
    if (!wellFormed(key)) throw new InvalidHeaderError(topic, KEY_HEADER, 'value', 'unpaired-surrogate');
    table[KEY_HEADER] = key;
  }
  properties.headers = table;
  return properties;
}

/**
 * Headers of a received message. Table entries: strings as they are; numbers,
 * booleans and AMQP timestamps as decimal text; byte arrays as text when they
 * are valid UTF-8. Entries of other types (nested tables, arrays, decimals,
 * void — RabbitMQ's own `x-death` among them) are left out; the native message
 * in `raw` keeps them. The contentType and messageId properties become
 * `content-type` and `message-id`, taking precedence over table entries of
 * the same name. `reply-to` and `correlation-id` come from the replyTo and
 * correlationId properties only: table entries of these names are left out,
 * so that a request is answered only where its sender asked, natively.
 */
export function receivedHeaders(message: ConsumeMessage): Headers {
  const headers: Headers = {};
  const table: unknown = message.properties.headers;
  if (table !== null && typeof table === 'object') {
    for (const [name, value] of Object.entries(table)) {
      if (name === REPLY_HEADER.replyTo || name === REPLY_HEADER.correlationId) continue;
      const text = headerValue(value);
      if (text !== undefined) headers[name] = text;
    }
  }
  const { contentType, messageId, replyTo, correlationId } = message.properties as {
    contentType?: unknown;
    messageId?: unknown;
    replyTo?: unknown;
    correlationId?: unknown;
  };
  if (typeof contentType === 'string') headers[HEADER.contentType] = contentType;
  if (typeof messageId === 'string') headers[HEADER.messageId] = messageId;
  if (typeof replyTo === 'string' && replyTo !== '') headers[REPLY_HEADER.replyTo] = replyTo;
  if (typeof correlationId === 'string') headers[REPLY_HEADER.correlationId] = correlationId;
  return headers;
}

function headerValue(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
    case 'bigint':
    case 'boolean':
      return String(value);
    case 'object': {
      if (Buffer.isBuffer(value)) return isUtf8(value) ? value.toString('utf8') : undefined;
      const tagged = value as { '!'?: unknown; value?: unknown } | null;
      if (tagged?.['!'] === 'timestamp' && typeof tagged.value === 'number') return String(tagged.value);
      return undefined;
    }
    default:
      return undefined;
  }
}

const LONE_SURROGATE = /\p{Cs}/u;

/** Whether `text` has no unpaired surrogate (so that UTF-8 carries it unchanged). */
export function wellFormed(text: string): boolean {
  return !LONE_SURROGATE.test(text);
}
