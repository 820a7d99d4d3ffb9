import { type Broker, MemoryBroker, type ObservableConnection } from '@ktransport/broker';
import { KafkaBroker } from '@ktransport/transport-kafka';
import { MqttBroker } from '@ktransport/transport-mqtt';
import type { Config } from './config.js';
import { startEmbeddedMqtt } from './embedded-mqtt.js';

export type ServiceBroker = Broker & ObservableConnection;

/** The broker a service runs on, and what else must stop with it. */
export interface Transport {
  readonly broker: ServiceBroker;
  /** `mqtt`, `kafka`, `memory` or `mqtt(embedded)`, for logs and the demo summary. */
  readonly name: string;
  /** Stops what the transport started besides the broker client (the embedded broker). */
  close(): Promise<void>;
}

/**
 * Builds the broker named by the config URL. Without one, an MQTT broker is
 * embedded in this process, so the service runs with nothing installed.
 * `role` names the service (`agent`, `saver`) in client ids.
 */
export async function openTransport(config: Config, role: string): Promise<Transport> {
  const clientId = config.instance ?? `saver-service-${role}`;
  const url = config.broker.url;
  if (url === 'memory:') return { broker: new MemoryBroker(), name: 'memory', close: () => Promise.resolve() };
  if (url?.startsWith('kafka://')) {
    // Kafka topic names cannot contain "/": the service's MQTT-style topics map to dotted names.
    // A saver that died is noticed after 10 s, so its partitions move to a live member quickly.
    const broker = new KafkaBroker({
      brokers: url,
      clientId,
      topicName: (topic) => topic.replaceAll('/', '.'),
      consumer: { sessionTimeoutMs: 10_000, heartbeatIntervalMs: 1_000 },
    });
    return { broker, name: 'kafka', close: () => Promise.resolve() };
  }
  const persistent = role !== 'agent';
  if (url) return { broker: mqtt(url, clientId, config.broker.protocolVersion, persistent), name: 'mqtt', close: () => Promise.resolve() };
  const embedded = await startEmbeddedMqtt(config.broker.embeddedPort);
  return { broker: mqtt(embedded.url, clientId, 4, persistent), name: 'mqtt(embedded)', close: () => embedded.close() };
}

/**
 * Ends the persistent MQTT session of `clientId` (a clean connect discards it),
 * so that a saver instance that will not come back leaves no queue behind on
 * the broker. The demo and the tests call it for the instances they made up.
 */
export async function endMqttSession(url: string, clientId: string, protocolVersion: 4 | 5 = 5): Promise<void> {
  const broker = new MqttBroker({ url, clientId, clean: true, protocolVersion, tracing: false, metrics: false });
  await broker.connect();
  await broker.disconnect();
}

/**
 * The saver resumes a persistent session under a fixed client id, so messages
 * published while it was down, or in flight when it died, are delivered when it
 * returns; the agent only publishes and starts clean. The embedded broker speaks
 * MQTT 3.1.1 and has no shared subscriptions.
 */
function mqtt(url: string, clientId: string, protocolVersion: 4 | 5, persistent: boolean): MqttBroker {
  return new MqttBroker({
    url,
    clientId,
    clean: !persistent,
    protocolVersion,
    sharedSubscriptions: protocolVersion === 5,
  });
}
