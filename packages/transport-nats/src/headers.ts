import type { Headers } from '@ktransport/broker';
import { REPLY_HEADER } from '@ktransport/broker';
import { invalidTextIndex } from '@ktransport/broker/transport';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/nats-core';
import { InvalidHeaderError } from './errors.js';
import { replySubjectProblem } from './subjects.js';

/** Header that carries `PublishOptions.key` (NATS messages have no key), as on MQTT. */
export const KEY_HEADER = 'message-key';

/** A NATS header name: a token of printable ASCII without spaces or colons. */
const TOKEN = /^[\x21-\x39\x3b-\x7e]+$/;

/**
 * NATS headers for outgoing headers (`content-type`, `traceparent`, `message-key`,
 * `reply-to`, `correlation-id` and the caller's ones alike), each checked first:
 * a name that is not a token, a value with a control character, or a non-empty
 * `reply-to` that is not a literal NATS subject a reply can be published to
 * rejects with an InvalidHeaderError.
 */
export function toNatsHeaders(topic: string, headers: Headers): MsgHdrs {
  const out = natsHeaders();
  for (const name in headers) {
    const value = headers[name];
    if (!TOKEN.test(name)) throw new InvalidHeaderError(topic, name, 'is not a valid NATS header name (printable ASCII without spaces or colons)');
    if (typeof value !== 'string') throw new InvalidHeaderError(topic, name, 'has a value that is not a string');
    const bad = invalidTextIndex(value);
    if (bad >= 0) throw new InvalidHeaderError(topic, name, `has a control character (or one no header may carry) in its value at index ${bad}`);
    if (name === REPLY_HEADER.replyTo && value !== '') assertReplySubject(topic, value);
    out.set(name, value);
  }
  return out;
}

/** Throws an InvalidHeaderError when `subject` (a `reply-to` value) is not a subject a reply can be published to. */
export function assertReplySubject(topic: string, subject: string): void {
  const why = replySubjectProblem(subject);
  if (why !== undefined) throw new InvalidHeaderError(topic, REPLY_HEADER.replyTo, `is not a NATS subject a reply can be published to: ${why}`);
}

/** Headers of a received message: a repeated name keeps every value, joined by ", ". */
export function fromNatsHeaders(headers: MsgHdrs | undefined): Headers {
  const out: Headers = {};
  if (!headers) return out;
  for (const name of headers.keys()) {
    const values = headers.values(name);
    if (values.length === 0) continue;
    out[name] = values.length === 1 ? (values[0] ?? '') : values.join(', ');
  }
  return out;
}
