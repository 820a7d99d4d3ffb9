import type { Broker } from '@ktransport/broker';
import { redactSecrets, redactUrl } from '@ktransport/broker/transport';
import { AmqpBroker } from '@ktransport/transport-amqp';
import { KafkaBroker, type KafkaSaslMechanism } from '@ktransport/transport-kafka';
import { MqttBroker } from '@ktransport/transport-mqtt';
import { NatsBroker } from '@ktransport/transport-nats';
import { RedisBroker } from '@ktransport/transport-redis';
import { UsageError } from './io.js';

/** The transports a URL scheme picks. */
export type TransportName = 'mqtt' | 'kafka' | 'amqp' | 'nats' | 'redis';

const SCHEMES: Readonly<Record<string, TransportName>> = {
  mqtt: 'mqtt',
  mqtts: 'mqtt',
  ws: 'mqtt',
  wss: 'mqtt',
  kafka: 'kafka',
  amqp: 'amqp',
  amqps: 'amqp',
  nats: 'nats',
  tls: 'nats',
  redis: 'redis',
  rediss: 'redis',
};

/** The schemes as the help and the errors list them. */
export const SCHEME_LIST = Object.keys(SCHEMES)
  .map((s) => `${s}://`)
  .join(', ');

/** What the commands need to open a broker. */
export interface ConnectOptions {
  readonly url: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Limit for connecting, in ms. */
  readonly timeoutMs: number;
  /** NATS: a stream to bind to or create, capturing `subjects`. */
  readonly stream?: { readonly name: string; readonly subjects: readonly string[] };
  /** Kafka SASL mechanism when credentials are given. */
  readonly sasl?: string;
  /** Where the broker reports what no caller can be told. */
  readonly report: (text: string) => void;
}

/** A broker picked by the URL, the secrets to mask in every message, and the URL as messages may show it. */
export interface Opened {
  readonly transport: TransportName;
  readonly broker: Broker;
  readonly displayUrl: string;
  readonly redact: (text: string) => string;
}

/** The transport a URL's scheme picks; a usage error naming the schemes otherwise. */
export function transportOf(url: string): TransportName {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'memory') throw new UsageError(`memory: is an in-process broker and means nothing to a command line; use one of ${SCHEME_LIST}`);
  const transport = scheme === undefined ? undefined : SCHEMES[scheme];
  if (!transport) {
    const shown = scheme === undefined ? `"${redactUrl(url)}" has no URL scheme` : `unknown URL scheme "${scheme}:"`;
    throw new UsageError(`${shown}; use one of ${SCHEME_LIST}`);
  }
  return transport;
}

const SASL: readonly KafkaSaslMechanism[] = ['plain', 'scram-sha-256', 'scram-sha-512'];

/**
 * Builds (does not connect) the broker for `options.url`. Credentials come from
 * the URL, or else from KTRANSPORT_USERNAME and KTRANSPORT_PASSWORD.
 */
export function openBroker(options: ConnectOptions): Opened {
  const transport = transportOf(options.url);
  const envUser = nonEmpty(options.env.KTRANSPORT_USERNAME);
  const envPass = nonEmpty(options.env.KTRANSPORT_PASSWORD);
  const secrets: string[] = [];
  if (envPass !== undefined) secrets.push(envPass, encodeURIComponent(envPass));
  const report = (text: string): void => options.report(redactSecrets(maskCredentials(text), secrets));
  const common = { tracing: false, metrics: false, onError: (error: unknown) => report(error instanceof Error ? error.message : String(error)) } as const;

  if (transport === 'kafka') {
    const { user, pass, hosts } = splitKafka(options.url);
    const username = user ?? envUser;
    const password = pass ?? envPass;
    if (pass !== undefined) secrets.push(pass);
    const mechanism = (options.sasl ?? options.env.KTRANSPORT_SASL_MECHANISM ?? 'plain').toLowerCase();
    if (!SASL.includes(mechanism as KafkaSaslMechanism)) throw new UsageError(`--sasl must be one of ${SASL.join(', ')}, not "${mechanism}"`);
    const broker = new KafkaBroker({
      ...common,
      brokers: `kafka://${hosts}`,
      clientId: 'ktransport-cli',
      startTimeoutMs: options.timeoutMs,
      ...(username !== undefined && password !== undefined ? { sasl: { mechanism: mechanism as KafkaSaslMechanism, username, password } } : {}),
    });
    return opened(transport, broker, `kafka://${username === undefined ? '' : `${username}:***@`}${hosts}`, secrets);
  }

  let parsed: URL;
  try {
    parsed = new URL(options.url);
  } catch {
    throw new UsageError(`"${redactUrl(options.url)}" is not a valid URL`);
  }
  if (parsed.password) secrets.push(parsed.password, decodeURIComponent(parsed.password));
  const inUrl = parsed.username !== '' || parsed.password !== '';
  const displayUrl = redactUrl(options.url);

  switch (transport) {
    case 'mqtt': {
      const credentials = inUrl ? {} : { ...(envUser === undefined ? {} : { username: envUser }), ...(envPass === undefined ? {} : { password: envPass }) };
      const broker = new MqttBroker({ ...common, url: options.url, connectTimeoutMs: options.timeoutMs, ...credentials });
      return opened(transport, broker, displayUrl, secrets);
    }
    case 'amqp':
    case 'redis': {
      if (!inUrl) {
        if (envUser !== undefined) parsed.username = encodeURIComponent(envUser);
        if (envPass !== undefined) parsed.password = encodeURIComponent(envPass);
      }
      const url = inUrl ? options.url : parsed.toString();
      const broker =
        transport === 'amqp'
          ? new AmqpBroker({ ...common, url, connectTimeoutMs: options.timeoutMs })
          : new RedisBroker({ ...common, url, connectTimeoutMs: options.timeoutMs, logger: (entry) => report(entry.message) });
      return opened(transport, broker, redactUrl(url), secrets);
    }
    case 'nats': {
      const credentials = inUrl ? {} : { ...(envUser === undefined ? {} : { username: envUser }), ...(envPass === undefined ? {} : { password: envPass }) };
      // A token alone (nats://token@host) is a secret too.
      if (parsed.username && !parsed.password) secrets.push(parsed.username, decodeURIComponent(parsed.username));
      const broker = new NatsBroker({
        ...common,
        url: options.url,
        connectTimeoutMs: options.timeoutMs,
        ...credentials,
        ...(options.stream ? { streams: [{ name: options.stream.name, subjects: [...options.stream.subjects] }] } : {}),
      });
      const shown = parsed.username && !parsed.password ? options.url.replace(/\/\/[^/@]*@/, '//***@') : displayUrl;
      return opened(transport, broker, shown, secrets);
    }
  }
}

function opened(transport: TransportName, broker: Broker, displayUrl: string, secrets: readonly string[]): Opened {
  return { transport, broker, displayUrl, redact: (text) => redactSecrets(maskCredentials(text), secrets) };
}

/**
 * Text (not a URL: `redactUrl` would rewrite a message that starts with one)
 * with the password of every `scheme://user:password@` in it masked.
 */
export function maskCredentials(text: string): string {
  return text.replace(/(\/\/[^\s/@:]*):[^\s/@]*@/g, '$1:***@');
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** `kafka://[user:pass@]host:port[,host:port]`: URL parsing does not take several hosts. */
function splitKafka(url: string): { user?: string; pass?: string; hosts: string } {
  const rest = url.replace(/^kafka:\/\//i, '').replace(/\/+$/, '');
  const at = rest.lastIndexOf('@');
  const hosts = at === -1 ? rest : rest.slice(at + 1);
  if (hosts === '' || !/^[^\s/,]+(,[^\s/,]+)*$/.test(hosts)) throw new UsageError(`"${redactUrl(url)}" is not kafka://host:port[,host:port]`);
  if (at === -1) return { hosts };
  const info = rest.slice(0, at);
  const colon = info.indexOf(':');
  const user = decodeURIComponent(colon === -1 ? info : info.slice(0, colon));
  return colon === -1 ? { user, hosts } : { user, pass: decodeURIComponent(info.slice(colon + 1)), hosts };
}

/** A NATS subject for a ktransport topic or filter, as the NATS transport maps them (`/` → `.`, `+` → `*`, `#` → `>`). */
export function natsSubject(topic: string): string {
  return topic
    .split('/')
    .map((level) => (level === '+' ? '*' : level === '#' ? '>' : level))
    .join('.');
}
