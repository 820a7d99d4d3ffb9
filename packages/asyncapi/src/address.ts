import { ConfigurationError } from '@ktransport/broker';
import type { AsyncApiParameter } from './types.js';

/** A channel address with the parameters that stand for a filter's wildcards. */
export interface Address {
  readonly address: string;
  readonly parameters: Record<string, AsyncApiParameter>;
}

/**
 * The AsyncAPI address of a ktransport topic or filter: `+` at level n becomes
 * the parameter `{leveln}` (levels counted from 1), a trailing `#` becomes `{rest}`.
 * A wildcard that is not a whole level, or a `#` before the last level, is
 * refused as no broker would accept that filter.
 */
export function addressOf(topic: string): Address {
  if (topic === '') throw new ConfigurationError('a topic cannot be empty');
  const parameters: Record<string, AsyncApiParameter> = {};
  const levels = topic.split('/').map((level, index, all) => {
    if (level === '+') {
      const name = `level${index + 1}`;
      parameters[name] = { description: `Any one topic level (the filter's \`+\` at level ${index + 1}).` };
      return `{${name}}`;
    }
    if (level === '#' && index === all.length - 1) {
      parameters.rest = { description: "Any remaining topic levels (the filter's `#`; MQTT also matches none)." };
      return '{rest}';
    }
    if (/[+#{}]/.test(level)) throw new ConfigurationError(`topic "${topic}": "+" and "#" must be whole levels, "#" the last one, and "{" "}" are not allowed`);
    return level;
  });
  return { address: levels.join('/'), parameters };
}
