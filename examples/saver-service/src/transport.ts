import { type Broker, MemoryBroker, type ObservableConnection } from '@ktransport/broker';
import { AmqpBroker } from '@ktransport/transport-amqp';
import { KafkaBroker } from '@ktransport/transport-kafka';
import { MqttBroker } from '@ktransport/transport-mqtt';
import { NatsBroker } from '@ktransport/transport-nats';
import { RedisBroker } from '@ktransport/transport-redis';
import type { Config } from './config.js';
import { startEmbeddedMqtt } from './embedded-mqtt.js';

export type ServiceBroker = Broker & ObservableConnection;

/** The broker a service runs on, and what else must stop with it. */
export interface Transport {
  readonly broker: ServiceBroker;
  /** `mqtt`, `kafka`, `amqp`, `nats`, `redis`, `memory` or `mqtt(embedded)`, for logs and the demo summary. */
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
  // RabbitMQ: the service's topics are routing keys on the `ktransport` topic exchange; the saver's
  // group is a durable queue, so reports published while it restarts wait there.
  if (url && /^amqps?:\/\//.test(url)) return { broker: new AmqpBroker({ url }), name: 'amqp', close: () => Promise.resolve() };
  // NATS JetStream: one stream captures every report subject (created by whichever service connects
  // first, bound by the other); the saver's group is a durable consumer on it.
  if (url && /^(nats|tls):\/\//.test(url)) {
    // A saver that died is noticed after 5 s (its unacknowledged reports go to a live member).
    const broker = new NatsBroker({ url, ackWaitMs: 5_000, streams: [{ name: 'SAVER_REPORTS', subjects: ['report.>'] }] });
    return { broker, name: 'nats', close: () => Promise.resolve() };
  }
  // Redis Streams: one stream per topic; the saver's group is a consumer group, and entries a killed
  // saver left unacknowledged are claimed by the next one after 5 s.
  if (url && /^rediss?:\/\//.test(url)) {
    return { broker: new RedisBroker({ url, claimIdleMs: 5_000 }), name: 'redis', close: () => Promise.resolve() };
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
