import { MqttBroker } from '@ktransport/transport-mqtt';
import { conformanceCases } from '@ktransport/broker/testing';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { Mosquitto } from './mosquitto.js';

// A private instance with persistence, so that the restart case can stop and start it.
let mosquitto: Mosquitto;
beforeAll(async () => {
  mosquitto = await Mosquitto.start();
});
afterAll(async () => {
  await mosquitto?.destroy();
});

describe('MqttBroker conformance (MQTT 5, Mosquitto 2)', () => {
  const cases = conformanceCases({
    createBroker: () => new MqttBroker({ url: mosquitto.url, redeliveryDelayMs: 50, reconnectPeriodMs: 200, tracing: false, metrics: false }),
    // persistent: false — unsubscribing drops an MQTT subscription and what would have been queued for it.
    features: { wildcards: true, groups: true, persistent: false, orderingPerKey: true, redelivery: true },
    restartBroker: () => mosquitto.restart(),
    waitMs: 10_000,
  });
  for (const c of cases) it(c.name, c.run, c.timeoutMs);
});
