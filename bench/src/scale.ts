import type { Broker, Message } from '@ktransport/broker';
import { MemoryBroker } from '@ktransport/broker';
import { MqttBroker, type MqttPublishOptions, type MqttSubscribeOptions } from '@ktransport/transport-mqtt';
import { type Body, bodyFactory, log, measure, Receiver, rssMb, type WorkerConfig, type WorkerResult } from './common.js';

/** Subscription `i`: `+` and `#` filters alternate; exactly one of them matches `topicOf(i)`. */
export function filterOf(base: string, i: number): string {
  return i % 2 === 0 ? `${base}/${i}/+` : `${base}/${i}/#`;
}

function topicOf(base: string, i: number): string {
  return `${base}/${i}/m`;
}

/**
 * Delivery throughput and resident memory with `subs` subscriptions on one
 * broker: each message is published to the topic of one subscription, in turn,
 * so every subscription is used and every delivery goes through the topic match.
 */
export async function scale(config: WorkerConfig): Promise<WorkerResult> {
  const subs = config.subs ?? 1;
  const qos = config.qos ?? 1;
  const receiver = new Receiver();
  const subscribeOptions: MqttSubscribeOptions = { qos };
  const publishOptions: MqttPublishOptions = { qos };
  const handler = (message: Message<Body>): void => receiver.record(message.body);
  const before = rssMb();
  let subscriber: Broker;
  let publisher: Broker;
  if (config.transport === 'mqtt') {
    subscriber = new MqttBroker({ url: config.mqttUrl });
    publisher = new MqttBroker({ url: config.mqttUrl });
    await publisher.connect();
  } else {
    subscriber = publisher = new MemoryBroker();
  }
  await subscriber.connect();
  const started = performance.now();
  const CHUNK = 500;
  for (let i = 0; i < subs; i += CHUNK) {
    const batch: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(subs, i + CHUNK); j++) batch.push(subscriber.subscribe(filterOf(config.topic, j), handler, subscribeOptions));
    await Promise.all(batch);
  }
  log(`scale: ${subs} subscriptions made in ${Math.round(performance.now() - started)} ms (rss ${before} -> ${rssMb()} MB)`);
  const body = bodyFactory(config.bytes);
  const topics = Array.from({ length: subs }, (_, i) => topicOf(config.topic, i));
  try {
    const result = await measure(config, receiver, (seq, done) => {
      const i = ((seq % subs) + subs) % subs;
      const topic = topics[i];
      if (topic === undefined) return done(new Error(`scale: no topic ${i}`));
      publisher.publish(topic, body(seq), publishOptions).then(() => done(), done);
    });
    result.note = `rss before subscribing ${before} MB`;
    return result;
  } finally {
    if (publisher !== subscriber) await publisher.disconnect();
    await subscriber.disconnect();
  }
}
