import { ConfigurationError } from '@ktransport/broker';
import { defined } from './declarations.js';
import type { AsyncApiServer } from './types.js';

/** A broker URL as the transports take it, or one with a description. */
export type ServerInput = string | { readonly url: string; readonly description?: string };

/** URL scheme -> AsyncAPI protocol name (the names AsyncAPI's bindings use). */
const PROTOCOLS: Readonly<Record<string, string>> = {
  mqtt: 'mqtt',
  mqtts: 'secure-mqtt',
  ws: 'ws',
  wss: 'wss',
  kafka: 'kafka',
  amqp: 'amqp',
  amqps: 'amqps',
  nats: 'nats',
  tls: 'nats',
  redis: 'redis',
  rediss: 'redis',
};

const URL_PARTS = /^([a-z][a-z0-9+.-]*):\/\/(?:[^/?#]*@)?([^@/?#]+)(\/[^?#]*)?(?:[?#].*)?$/i;

/**
 * The server object of a broker URL: protocol from the scheme, host and path
 * as written; user name, password, query and fragment are never copied.
 */
export function serverOf(name: string, input: ServerInput): AsyncApiServer {
  const url = typeof input === 'string' ? input : input.url;
  const parts = URL_PARTS.exec(url);
  const protocol = parts ? PROTOCOLS[(parts[1] ?? '').toLowerCase()] : undefined;
  if (!parts || !protocol) {
    throw new ConfigurationError(`server "${name}": expected a broker URL (${Object.keys(PROTOCOLS).join(', ')}://host:port), got "${redact(url)}"`);
  }
  const pathname = parts[3] && parts[3] !== '/' ? parts[3] : undefined;
  const description = typeof input === 'string' ? undefined : input.description;
  return { host: parts[2] ?? '', protocol, ...defined({ pathname, description }) };
}

/** The URL without its credentials, for an error message. */
function redact(url: string): string {
  return url.replace(/\/\/[^/?#]*@/, '//***@');
}
