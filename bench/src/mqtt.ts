import type { Message } from '@ktransport/broker';
import { Subscribe } from '@ktransport/broker';
import { MqttBroker, MqttServer, type MqttSubscribeOptions } from '@ktransport/transport-mqtt';
import { randomUUID } from 'node:crypto';
import mqtt from 'mqtt';
import { type Body, bodyFactory, measure, Receiver, type WorkerConfig, type WorkerResult } from './common.js';

/** The options every MQTT client of the benchmark uses (those ktransport's MqttBroker sets by default). */
export function rawClientOptions(clientId: string): mqtt.IClientOptions {
  return { protocolVersion: 5, clientId, clean: true, keepalive: 60, connectTimeout: 10_000, reconnectPeriod: 1_000, resubscribe: true };
}

/**
 * ktransport's side of an MQTT measurement: an MqttServer running a @Subscribe
 * handler (JSON codec, the config's QoS) that hands bodies to `receiver`, and a
 * connected MqttBroker to publish with. `close` disconnects both.
 */
export async function ktransportPair(config: WorkerConfig, receiver: Receiver): Promise<{ publisher: MqttBroker; close: () => Promise<void> }> {
  const options: MqttSubscribeOptions = { qos: config.qos ?? 1 };
  class Sink {
    @Subscribe(config.topic, options)
    onMessage(message: Message<Body>): void {
      receiver.record(message.body);
    }
  }
  const server = new MqttServer({ broker: { url: config.mqttUrl } });
  server.register(new Sink());
  await server.start();
  const publisher = new MqttBroker({ url: config.mqttUrl });
  await publisher.connect();
  return {
    publisher,
    close: async () => {
      await publisher.disconnect();
      await server.stop();
    },
  };
}

/** MQTT end to end: publish through a Broker, receive in a @Subscribe handler (JSON codec). */
export async function ktransport(config: WorkerConfig, tracing: boolean): Promise<WorkerResult> {
  // Installed before any broker exists, as an application does at start-up.
  const otel = tracing ? (await import('./otel.js')).installTracing() : undefined;
  const qos = config.qos ?? 1;
  const receiver = new Receiver();
  const { publisher, close } = await ktransportPair(config, receiver);
  const body = bodyFactory(config.bytes);
  try {
    const result = await measure(config, receiver, (seq, done) => {
      publisher.publish(config.topic, body(seq), { qos }).then(() => done(), done);
    });
    if (otel) {
      await otel.shutdown();
      result.note = `${otel.exported()} spans exported (the batch processor drops what exceeds its queue)`;
    }
    return result;
  } finally {
    await close();
  }
}

/**
 * mqtt.js alone: the same client options, QoS and body bytes; JSON encoded and
 * parsed by hand. With `headers`, it also sends what ktransport puts on the wire
 * (a content type and a message-id user property) and reads them on receive:
 * the cost of the wire format itself, apart from the framework.
 */
export async function raw(config: WorkerConfig, headers = false): Promise<WorkerResult> {
  const qos = config.qos ?? 1;
  const receiver = new Receiver();
  const subscriber = await mqtt.connectAsync(config.mqttUrl, rawClientOptions(`bench-raw-sub-${process.pid}`));
  let ids = 0;
  subscriber.on('message', (_topic, payload, packet) => {
    if (headers) ids += packet.properties?.userProperties?.['message-id'] === undefined ? 0 : 1;
    receiver.record(JSON.parse(payload.toString()) as Body);
  });
  await subscriber.subscribeAsync(config.topic, { qos });
  const publisher = await mqtt.connectAsync(config.mqttUrl, rawClientOptions(`bench-raw-pub-${process.pid}`));
  // A conforming client keeps at most the broker's Receive Maximum QoS 1 publishes unacknowledged (ktransport does too).
  const receiveMaximum = publisher.serverProperties?.receiveMaximum ?? 65_535;
  const window = qos > 0 ? Math.min(config.window, receiveMaximum) : config.window;
  const body = bodyFactory(config.bytes);
  try {
    return await measure(
      config,
      receiver,
      (seq, done) => {
        const options: mqtt.IClientPublishOptions = headers
          ? { qos, properties: { contentType: 'application/json', userProperties: { 'message-id': randomUUID() } } }
          : { qos };
        publisher.publish(config.topic, Buffer.from(JSON.stringify(body(seq))), options, (error) => done(error));
      },
      window,
    ).then((result) => {
      if (headers && ids < result.n) throw new Error(`only ${ids} of ${result.n} messages carried a message-id`);
      return result;
    });
  } finally {
    await publisher.endAsync();
    await subscriber.endAsync();
  }
}
