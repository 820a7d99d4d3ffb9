import type { BasePublishOptions, BaseSubscribeOptions, CodecName, CommonBrokerOptions, Headers, SubscribeOptions } from '@ktransport/broker';
import { ConfigurationError } from '@ktransport/broker';
import { asBuffer, hasWildcard, headerText, redactUrl } from '@ktransport/broker/transport';
import type { IClientOptions } from 'mqtt';
import { mqttStringBytes, MQTT_MAX_STRING, remainingLength, toProperties } from './headers.js';

/** MQTT quality of service: at most once, at least once, exactly once. */
export type QoS = 0 | 1 | 2;

/** TLS settings for `mqtts://` and `wss://` URLs (PEM strings or buffers). */
export interface MqttTlsOptions {
  /** CA certificate(s) that sign the broker's certificate. Default: Node's bundled roots. */
  ca?: string | Buffer | string[] | Buffer[];
  /** Client certificate, for mutual TLS. */
  cert?: string | Buffer;
  /** Private key of the client certificate. */
  key?: string | Buffer;
  /** Refuse a broker whose certificate does not verify. Default true. */
  rejectUnauthorized?: boolean;
  /** Server name for SNI and certificate checks. Default: the URL's host. */
  servername?: string;
}

/** Last will: published by the broker when this client's connection ends without a DISCONNECT. */
export interface MqttWill {
  topic: string;
  /** Encoded with `codec` (default: the broker's default codec) when the broker is constructed. */
  body: unknown;
  codec?: CodecName;
  /** User properties of the will (MQTT 5 only; a configuration error on 3.1.1). */
  headers?: Headers;
  /** Default 1. */
  qos?: QoS;
  retain?: boolean;
}

/**
 * Options of `MqttBroker`: where and how to connect (URL, protocol version,
 * session, credentials, TLS, will), reconnection, flow control and limits,
 * plus the options every broker takes (codecs, telemetry, middleware, drain).
 * Every option has a default; invalid values throw a ConfigurationError in the
 * constructor.
 */
export interface MqttBrokerOptions extends CommonBrokerOptions {
  /** `mqtt://`, `mqtts://`, `ws://` or `wss://` URL of the broker. Default `mqtt://127.0.0.1:1883`. */
  url?: string;
  /** 5 (MQTT 5, default) or 4 (MQTT 3.1.1: no headers, no content type). */
  protocolVersion?: 4 | 5;
  /** Fixed client id; needed for a persistent session. Default: a random `ktransport-…` id. */
  clientId?: string;
  /** Start a new session (true, default) or resume the session of `clientId` (false). */
  clean?: boolean;
  /**
   * MQTT 5: seconds the broker keeps the session after a disconnect. Default 0 with
   * `clean: true`, and 4294967295 (never expires, as in 3.1.1) with `clean: false`.
   */
  sessionExpiryInterval?: number;
  /** User name sent in CONNECT; a refusal rejects `connect()` with an AuthenticationError. */
  username?: string;
  /** Password sent in CONNECT with `username`. */
  password?: string;
  /** TLS and mutual TLS; only with `mqtts://` or `wss://`. */
  tls?: MqttTlsOptions;
  /** Message the broker publishes for this client when its connection ends without a DISCONNECT; checked in the constructor. */
  will?: MqttWill;
  /** Seconds between keep-alive pings; a silent connection is dropped after 1.5 times this. Default 60. */
  keepaliveSeconds?: number;
  /** Limit for the first connection (and for each CONNACK). Default 10,000 ms. */
  connectTimeoutMs?: number;
  /** Wait between reconnection attempts after the connection was lost. Default 1,000 ms. */
  reconnectPeriodMs?: number;
  /**
   * Subscribe a `group` as a shared subscription `$share/{group}/{filter}` (true, default). With
   * false (brokers without shared subscriptions), a group subscribes to the plain filter: members
   * on this connection still share its messages, but every connection gets every message.
   */
  sharedSubscriptions?: boolean;
  /**
   * MQTT 5: QoS 1/2 messages the broker may push before acknowledgements come back (1-65535).
   * Default 65535, sent in CONNECT: without it Mosquitto uses its max_inflight_messages (20)
   * and queues at most max_queued_messages (1000) more per client, dropping the rest.
   */
  receiveMaximum?: number;
  /** Largest payload `publish` accepts; larger ones reject with a PayloadTooLargeError. Default 268,435,455 (MQTT's limit). */
  maxPayloadBytes?: number;
  /** Wait before a message whose handler failed (and was not dead-lettered) is handled again. Default 1,000 ms. */
  redeliveryDelayMs?: number;
}

/**
 * Options of `MqttBroker.publish`: the core ones (headers, key, codec) and
 * MQTT's QoS and retain flag. Headers travel as MQTT 5 user properties; on
 * MQTT 3.1.1 a publish with headers is refused.
 */
export interface MqttPublishOptions extends BasePublishOptions {
  /** Default 1: `publish` resolves on PUBACK (QoS 1), PUBCOMP (QoS 2) or once written (QoS 0). */
  qos?: QoS;
  /** Ask the broker to keep the message for future subscribers of the topic. */
  retain?: boolean;
}

/** Any Standard Schema (the core does not re-export the spec's type, so it is derived here). */
export type Schema = NonNullable<SubscribeOptions['schema']>;
/** The output type of a Standard Schema. */
export type InferOutput<S extends Schema> = NonNullable<S['~standard']['types']>['output'];

/**
 * Options of `MqttBroker.subscribe` and `MqttServer.subscribe`: the core ones
 * (group, concurrency, schema, retry, dead letter, ...) and the QoS to
 * subscribe with. A `group` becomes a shared subscription
 * `$share/{group}/{filter}` unless the broker was created with
 * `sharedSubscriptions: false`.
 */
export interface MqttSubscribeOptions<S extends Schema = Schema> extends BaseSubscribeOptions<S> {
  /** Highest QoS the broker uses to deliver to this subscription. Default 1. */
  qos?: QoS;
}

// MQTT's options are options of the core's transport-independent APIs too (`@Subscribe`,
// `BrokerServer.subscribe`, the `Broker` interface), typed and checked, once this package is imported.
declare module '@ktransport/broker' {
  interface TransportSubscribeOptions {
    /** MQTT: highest QoS the broker uses to deliver to this subscription. Default 1. */
    qos?: QoS;
  }
  interface TransportPublishOptions {
    /** MQTT: 0, 1 (default) or 2. */
    qos?: QoS;
    /** MQTT: ask the broker to keep the message for future subscribers of the topic. */
    retain?: boolean;
  }
}

/** Every option with its default applied and checked. */
export interface ResolvedOptions {
  /** The URL to connect to; never put into text: see displayUrl. */
  readonly url: string;
  /** The URL with its password masked (`redactUrl`), for error messages. */
  readonly displayUrl: string;
  /** Passwords (in the URL or the options) that must not appear in any error message. */
  readonly secrets: readonly string[];
  readonly protocol: 'mqtt' | 'mqtts' | 'ws' | 'wss';
  readonly protocolVersion: 4 | 5;
  readonly clientId: string;
  readonly clean: boolean;
  readonly sessionExpiryInterval: number;
  readonly keepaliveSeconds: number;
  readonly connectTimeoutMs: number;
  readonly reconnectPeriodMs: number;
  /** MQTT 5: sent in CONNECT; undefined on 3.1.1, which cannot send it. */
  readonly receiveMaximum: number | undefined;
  readonly sharedSubscriptions: boolean;
  readonly maxPayloadBytes: number;
  readonly redeliveryDelayMs: number;
}

/** MQTT 5's largest Receive Maximum, and the default this transport sends. */
const MAX_RECEIVE_MAXIMUM = 65_535;
/** MQTT's largest remaining length, the upper bound of any payload. */
export const MQTT_MAX_PAYLOAD = 268_435_455;
const NEVER_EXPIRES = 0xffff_ffff;
const SCHEMES = new Set(['mqtt:', 'mqtts:', 'ws:', 'wss:']);

/** Applies defaults and rejects bad values with a ConfigurationError, before anything connects. */
export function resolveOptions(options: MqttBrokerOptions, randomId: string): ResolvedOptions {
  const url = options.url ?? 'mqtt://127.0.0.1:1883';
  const displayUrl = redactUrl(url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not the cause: URL's error repeats the input, password included.
    throw new ConfigurationError(`invalid MQTT url "${displayUrl}"`);
  }
  if (!SCHEMES.has(parsed.protocol)) {
    throw new ConfigurationError(`unsupported MQTT url scheme "${parsed.protocol}" in "${displayUrl}"; use mqtt://, mqtts://, ws:// or wss://`);
  }
  const protocol = parsed.protocol.slice(0, -1) as ResolvedOptions['protocol'];
  if (options.tls && protocol !== 'mqtts' && protocol !== 'wss') {
    throw new ConfigurationError(`tls options need an mqtts:// or wss:// url, got "${displayUrl}"`);
  }
  const secrets = [options.password, parsed.password, safeDecode(parsed.password)].filter((s): s is string => !!s);
  const protocolVersion = options.protocolVersion ?? 5;
  if (protocolVersion !== 4 && protocolVersion !== 5) throw new ConfigurationError(`protocolVersion must be 4 or 5, got ${String(protocolVersion)}`);
  const clean = options.clean ?? true;
  if (!clean && !options.clientId) throw new ConfigurationError('a persistent session (clean: false) needs a fixed clientId');
  if (options.clientId !== undefined && options.clientId.length === 0) throw new ConfigurationError('clientId must not be empty');
  mqttString('clientId', options.clientId);
  mqttString('username', options.username);
  if (protocolVersion === 4) {
    for (const name of ['sessionExpiryInterval', 'receiveMaximum'] as const) {
      if (options[name] !== undefined) throw new ConfigurationError(`${name} is an MQTT 5 property; it cannot be used with protocolVersion 4`);
    }
    if (options.will?.headers && Object.keys(options.will.headers).length > 0) {
      throw new ConfigurationError('will headers need MQTT 5 (user properties); MQTT 3.1.1 cannot carry them');
    }
  }
  const sessionExpiryInterval = options.sessionExpiryInterval ?? (clean ? 0 : NEVER_EXPIRES);
  integer('sessionExpiryInterval', sessionExpiryInterval, 0, NEVER_EXPIRES);
  const keepaliveSeconds = integer('keepaliveSeconds', options.keepaliveSeconds ?? 60, 0, 65_535);
  const connectTimeoutMs = integer('connectTimeoutMs', options.connectTimeoutMs ?? 10_000, 1, 2 ** 31 - 1);
  const reconnectPeriodMs = integer('reconnectPeriodMs', options.reconnectPeriodMs ?? 1_000, 1, 2 ** 31 - 1);
  // Sent even when not set (MQTT 5): see the option.
  const receiveMaximum = protocolVersion === 5 ? integer('receiveMaximum', options.receiveMaximum ?? MAX_RECEIVE_MAXIMUM, 1, MAX_RECEIVE_MAXIMUM) : undefined;
  const maxPayloadBytes = integer('maxPayloadBytes', options.maxPayloadBytes ?? MQTT_MAX_PAYLOAD, 0, MQTT_MAX_PAYLOAD);
  const redeliveryDelayMs = integer('redeliveryDelayMs', options.redeliveryDelayMs ?? 1_000, 0, 2 ** 31 - 1);
  if (options.will) {
    if (!options.will.topic || hasWildcard(options.will.topic)) throw new ConfigurationError(`invalid will topic "${headerText(options.will.topic, 200)}"`);
    qos('will.qos', options.will.qos ?? 1);
  }
  return {
    url,
    displayUrl,
    secrets,
    protocol,
    protocolVersion,
    clientId: options.clientId ?? `ktransport-${randomId}`,
    clean,
    sessionExpiryInterval,
    keepaliveSeconds,
    connectTimeoutMs,
    reconnectPeriodMs,
    receiveMaximum,
    sharedSubscriptions: options.sharedSubscriptions ?? true,
    maxPayloadBytes,
    redeliveryDelayMs,
  };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Checks a QoS value from options; returns it typed. */
export function qos(name: string, value: unknown): QoS {
  if (value !== 0 && value !== 1 && value !== 2) throw new ConfigurationError(`${name} must be 0, 1 or 2, got ${String(value)}`);
  return value;
}

/** Refuses a string option that MQTT cannot carry in CONNECT (a control character, over 65,535 bytes). */
function mqttString(name: string, value: string | undefined): void {
  if (value === undefined) return;
  const size = mqttStringBytes(value);
  if (size === -1) throw new ConfigurationError(`${name} must be a string`);
  if (size === -2) throw new ConfigurationError(`${name} is longer than 65,535 UTF-8 bytes`);
  if (size < 0) throw new ConfigurationError(`${name} has a character MQTT strings must not carry at index ${-3 - size}`);
}

function integer(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigurationError(`${name} must be a whole number from ${min} to ${max}, got ${value}`);
  }
  return value;
}

/** A will already encoded by the broker's codec. */
export interface EncodedWill {
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly headers: Headers;
  readonly qos: QoS;
  readonly retain: boolean;
}

/** The mqtt.js options for resolved broker options. */
export function clientOptions(resolved: ResolvedOptions, options: MqttBrokerOptions, will: EncodedWill | undefined): IClientOptions {
  const v5 = resolved.protocolVersion === 5;
  const properties: NonNullable<IClientOptions['properties']> = {};
  if (v5 && resolved.sessionExpiryInterval > 0) properties.sessionExpiryInterval = resolved.sessionExpiryInterval;
  if (v5 && resolved.receiveMaximum !== undefined) properties.receiveMaximum = resolved.receiveMaximum;
  const client: IClientOptions = {
    protocolVersion: resolved.protocolVersion,
    clientId: resolved.clientId,
    clean: resolved.clean,
    keepalive: resolved.keepaliveSeconds,
    connectTimeout: resolved.connectTimeoutMs,
    reconnectPeriod: resolved.reconnectPeriodMs,
    // A refused reconnect (broker restarting, credentials rotated) is retried too; the first attempt is bounded by connect().
    reconnectOnConnackError: true,
    resubscribe: true,
    properties,
  };
  if (options.username !== undefined) client.username = options.username;
  if (options.password !== undefined) client.password = options.password;
  const tls = options.tls;
  if (tls) {
    if (tls.ca !== undefined) client.ca = tls.ca;
    if (tls.cert !== undefined) client.cert = tls.cert;
    if (tls.key !== undefined) client.key = tls.key;
    if (tls.servername !== undefined) {
      client.servername = tls.servername;
      // mqtt.js hands only ca/cert/key/rejectUnauthorized to the WebSocket; the server name goes this way.
      // (ws passes it on to tls.connect; its typings do not list it, hence the variable.)
      const wsOptions = { servername: tls.servername, rejectUnauthorized: tls.rejectUnauthorized ?? true };
      if (resolved.protocol === 'wss') client.wsOptions = wsOptions;
    }
    client.rejectUnauthorized = tls.rejectUnauthorized ?? true;
  }
  if (will) {
    const properties = v5 ? toProperties(will.headers) : undefined;
    checkWill(will, properties);
    client.will = {
      topic: will.topic,
      payload: asBuffer(will.payload),
      qos: will.qos,
      retain: will.retain,
      ...(properties ? { properties } : {}),
    };
  }
  return client;
}

/**
 * The will travels in CONNECT: a string MQTT cannot carry there would make every
 * connection attempt fail, so it is refused when the broker is constructed. Its
 * payload is a binary field with a two-byte length in CONNECT.
 */
function checkWill(will: EncodedWill, properties: ReturnType<typeof toProperties> | undefined): void {
  try {
    remainingLength(will.topic, 0, will.qos, properties);
  } catch (error) {
    throw new ConfigurationError(`invalid will: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  if (will.payload.byteLength > MQTT_MAX_STRING) {
    throw new ConfigurationError(`the will body is ${will.payload.byteLength} bytes encoded; MQTT carries at most 65,535 in CONNECT`);
  }
}
