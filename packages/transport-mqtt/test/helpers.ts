import { randomUUID } from 'node:crypto';
import type { ConnectionState } from '@ktransport/broker';
import { MqttBroker, type MqttBrokerOptions } from '@ktransport/transport-mqtt';
import { afterEach } from 'vitest';
import { SHARED_URL } from './mosquitto.js';

export { sleep, waitFor } from '@ktransport/broker/testing';

const run = randomUUID().slice(0, 8);
let counter = 0;

/** A topic no other test (or test file running in parallel) uses. */
export function topic(name: string): string {
  return `ktm-${run}-${++counter}-${name}`;
}

const opened = new Set<MqttBroker>();

/** A connected broker (shared Mosquitto unless `url` says otherwise), disconnected after the test. */
export async function open(options: MqttBrokerOptions = {}): Promise<MqttBroker> {
  const broker = new MqttBroker({ url: SHARED_URL, tracing: false, metrics: false, ...options });
  await broker.connect();
  opened.add(broker);
  return broker;
}

afterEach(async () => {
  const brokers = [...opened];
  opened.clear();
  await Promise.all(brokers.map((b) => b.disconnect().catch(() => undefined)));
});

/** Resolves when `promise` settles: 'ok' or the error. */
export function outcome(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => 'ok',
    (error: unknown) => error,
  );
}

/** How a promise settled within `ms`: 'ok', the error, or 'pending' (still waiting: a hang, made visible). */
export function within(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('pending'), ms)));
  return Promise.race([outcome(promise), late]).finally(() => clearTimeout(timer));
}

/** The broker's state now and every change after, for asserting that a connection never dropped. */
export function states(broker: MqttBroker): ConnectionState[] {
  const seen: ConnectionState[] = [broker.state];
  broker.onStateChange((s) => void seen.push(s));
  return seen;
}

/** `value`, or a failure naming `what` when it is missing. */
export function defined<T>(value: T | null | undefined, what: string): T {
  if (value === undefined || value === null) throw new Error(`expected ${what}, found none`);
  return value;
}
