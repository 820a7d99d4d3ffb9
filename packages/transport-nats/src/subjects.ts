import { ConfigurationError } from '@ktransport/broker';
import { headerText } from '@ktransport/broker/transport';
import { InvalidTopicError } from './errors.js';

/**
 * Characters a ktransport topic must not contain on NATS: `.` separates NATS
 * subject tokens, `*` and `>` are NATS wildcards, whitespace ends a subject in
 * the protocol. Taken literally they would change what a subject means, so a
 * topic with any of them is refused instead of being rewritten.
 */
const FORBIDDEN = /[.*>\s]/u;

/** Why a topic or filter cannot become a NATS subject, or undefined when it can. */
function problem(topic: string, filter: boolean): string | undefined {
  if (typeof topic !== 'string' || topic.length === 0) return 'it is empty';
  const bad = FORBIDDEN.exec(topic);
  if (bad) return `it contains ${JSON.stringify(bad[0])} at index ${bad.index} (".", "*", ">" and whitespace are NATS syntax)`;
  if (/[\p{Cc}]/u.test(topic)) return 'it contains a control character';
  const levels = topic.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] ?? '';
    if (level.length === 0) return 'it has an empty level (a leading, trailing or double "/"): NATS subjects have no empty tokens';
    if (!filter && (level.includes('+') || level.includes('#'))) return 'wildcards (+, #) are for subscriptions, not for publishing';
    if (filter && level.includes('+') && level !== '+') return '+ must be a whole level';
    if (filter && level.includes('#') && (level !== '#' || i !== levels.length - 1)) return '# must be a whole level and the last one';
  }
  return undefined;
}

/** The NATS subject of a topic or filter: `/` becomes `.`, a `+` level `*`, a final `#` level `>`. */
function toSubject(topic: string): string {
  let subject = '';
  const levels = topic.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] ?? '';
    if (i > 0) subject += '.';
    subject += level === '+' ? '*' : level === '#' ? '>' : level;
  }
  return subject;
}

/** Subjects of the topics published to lately (checked and mapped once); emptied when it is full. */
const published = new Map<string, string>();
const PUBLISHED_MAX = 1_024;

/** The NATS subject to publish a topic to; a topic NATS cannot carry as it is rejects with an InvalidTopicError. */
export function publishSubject(topic: string): string {
  const known = published.get(topic);
  if (known !== undefined) return known;
  const why = problem(topic, false);
  if (why !== undefined) throw new InvalidTopicError(String(topic), why);
  const subject = topic.includes('/') ? toSubject(topic) : topic;
  if (published.size >= PUBLISHED_MAX) published.clear();
  published.set(topic, subject);
  return subject;
}

/** The NATS subject filter of a subscription filter; an invalid one throws a ConfigurationError. */
export function filterSubject(filter: string): string {
  const why = problem(filter, true);
  if (why !== undefined) throw new ConfigurationError(`cannot subscribe to "${headerText(String(filter), 200)}" on NATS: ${why}`);
  return toSubject(filter);
}

/** The ktransport topic of a received subject: `.` becomes `/` (subjects never carry `/` from ktransport topics). */
export function topicOf(subject: string): string {
  return subject.includes('.') ? subject.replaceAll('.', '/') : subject;
}

/**
 * Bound of a `reply-to` subject, in UTF-8 bytes: it goes into the control line
 * of the reply's publish, which the server limits (4 KiB by default) and
 * answers by closing the connection when exceeded.
 */
export const REPLY_SUBJECT_MAX_BYTES = 1_024;

/**
 * Why `subject` cannot be published a reply to, or undefined when it can: it
 * must be a literal NATS subject (no wildcard `*` or `>`, no whitespace or
 * control character, no empty token) of at most REPLY_SUBJECT_MAX_BYTES bytes.
 */
export function replySubjectProblem(subject: string): string | undefined {
  if (typeof subject !== 'string' || subject.length === 0) return 'it is empty';
  const bytes = Buffer.byteLength(subject);
  if (bytes > REPLY_SUBJECT_MAX_BYTES) return `it has ${bytes} bytes, more than ${REPLY_SUBJECT_MAX_BYTES}`;
  const bad = /[*>\s\p{Cc}]/u.exec(subject);
  if (bad) return `it contains ${JSON.stringify(bad[0])} at index ${bad.index} (a reply subject has no wildcards, whitespace or control characters)`;
  if (subject.startsWith('.') || subject.endsWith('.') || subject.includes('..')) return 'it has an empty token (a leading, trailing or double ".")';
  return undefined;
}
