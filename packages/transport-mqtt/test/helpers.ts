import { randomUUID } from 'node:crypto';
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
  return promise.then(() => 'ok', (error: unknown) => error);
}
