import { ConfigurationError, PublishError } from './errors.js';
import { headerText } from './text.js';

/** Checks a topic to publish to: not empty, no wildcards, no NUL. Throws PublishError. */
export function assertPublishTopic(topic: string): void {
  if (typeof topic !== 'string' || topic.length === 0) throw new PublishError(String(topic), 'topic must be a non-empty string');
  if (/[+#]/.test(topic) || topic.includes('\u0000')) {
    throw new PublishError(topic, `cannot publish to "${headerText(topic, 200)}": wildcards (+, #) and NUL are not allowed in a topic name`);
  }
}

/**
 * Checks a subscription filter in MQTT syntax: levels split by `/`, `+` matches
 * one whole level, `#` the rest and only as the last level. Throws ConfigurationError.
 */
export function assertFilter(filter: string): void {
  if (typeof filter !== 'string' || filter.length === 0) throw new ConfigurationError('topic filter must be a non-empty string');
  const levels = filter.split('/');
  levels.forEach((level, i) => {
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
      throw new ConfigurationError(`invalid filter "${filter}": # must be a whole level and the last one`);
    }
    if (level.includes('+') && level !== '+') throw new ConfigurationError(`invalid filter "${filter}": + must be a whole level`);
  });
}

/** Whether a filter contains wildcards. */
export function hasWildcard(filter: string): boolean {
  return filter.includes('+') || filter.includes('#');
}
