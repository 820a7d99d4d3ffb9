import 'reflect-metadata';
import type { Message } from '@ktransport/broker';
import { Subscribe } from '@ktransport/broker';
import { KafkaServer, type KafkaSubscribeOptions } from '@ktransport/transport-kafka';
import kafkajs from 'kafkajs';
import mqtt from 'mqtt';
import { type Body, bodyFactory, percentile, Receiver, round, rssMb, sleep, WARMUP_BASE, type WorkerConfig, type WorkerResult } from './common.js';
import { BATCH_MESSAGES, createTopic, FETCH_WAIT_MS, joined, jsonValue, PARTITIONS } from './kafka-util.js';
import { ktransportPair, rawClientOptions } from './mqtt.js';

const { Kafka, logLevel, Partitioners } = kafkajs;

type Send = (seq: number) => void;

/**
 * Publishes at a fixed rate (`rate` per second for `durationMs`, after a warm-up
 * of `warmup` ms, default 1,000, at the same rate) and records the time from the publish call to the
 * handler for every measured message.
 */
async function fixedRate(config: WorkerConfig, receiver: Receiver, send: Send): Promise<WorkerResult> {
  const rate = config.rate ?? 1_000;
  const durationMs = config.durationMs ?? 10_000;
  const warmup = Math.round((rate * (config.warmup > 0 ? config.warmup : 1_000)) / 1_000);
  const total = Math.round((rate * durationMs) / 1_000);
  await paced(rate, warmup, (i) => send(WARMUP_BASE + i));
  await receiver.waitFor('warm', warmup, config.idleMs, () => true);
  receiver.keepLatencies();
  receiver.start = performance.now();
  await paced(rate, total, send);
  await receiver.waitFor('measured', total, config.idleMs, () => true);
  const sorted = Float64Array.from(receiver.latencies).sort();
  const list = Array.from(sorted);
  return {
    n: receiver.count,
    sent: total,
    elapsed_ms: round(receiver.last - receiver.start, 1),
    msgs_per_s: Math.round((receiver.count / (receiver.last - receiver.start)) * 1000),
    p50_ms: round(percentile(list, 50)),
    p99_ms: round(percentile(list, 99)),
    max_ms: round(list[list.length - 1] ?? NaN),
    rss_mb: rssMb(),
    ...(receiver.count < total ? { note: `${total - receiver.count} of ${total} messages did not arrive` } : {}),
  };
}

/** Calls `send(i)` for i in [0, count) at `rate` per second, catching up when a timer fires late. */
function paced(rate: number, count: number, send: (i: number) => void): Promise<void> {
  return new Promise((resolve) => {
    const start = performance.now();
    let sent = 0;
    const tick = (): void => {
      const due = Math.min(count, Math.floor(((performance.now() - start) * rate) / 1_000) + 1);
      while (sent < due) send(sent++);
      if (sent >= count) resolve();
      else setTimeout(tick, Math.max(0, (sent * 1_000) / rate - (performance.now() - start)));
    };
    tick();
  });
}

function failOnError(error: unknown): void {
  process.stderr.write(`publish failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}

export async function mqttKtransport(config: WorkerConfig): Promise<WorkerResult> {
  const qos = config.qos ?? 1;
  const receiver = new Receiver();
  const { publisher, close } = await ktransportPair(config, receiver);
  const body = bodyFactory(config.bytes);
  try {
    return await fixedRate(config, receiver, (seq) => void publisher.publish(config.topic, body(seq), { qos }).catch(failOnError));
  } finally {
    await close();
  }
}

export async function mqttRaw(config: WorkerConfig): Promise<WorkerResult> {
  const qos = config.qos ?? 1;
  const receiver = new Receiver();
  const subscriber = await mqtt.connectAsync(config.mqttUrl, rawClientOptions(`bench-lat-sub-${process.pid}`));
  subscriber.on('message', (_topic, payload) => receiver.record(JSON.parse(payload.toString()) as Body));
  await subscriber.subscribeAsync(config.topic, { qos });
  const publisher = await mqtt.connectAsync(config.mqttUrl, rawClientOptions(`bench-lat-pub-${process.pid}`));
  const body = bodyFactory(config.bytes);
  try {
    return await fixedRate(config, receiver, (seq) =>
      publisher.publish(config.topic, Buffer.from(JSON.stringify(body(seq))), { qos }, (error) => error && failOnError(error)),
    );
  } finally {
    await publisher.endAsync();
    await subscriber.endAsync();
  }
}

export async function kafkaKtransport(config: WorkerConfig): Promise<WorkerResult> {
  await createTopic(config.kafkaBrokers, config.topic);
  const receiver = new Receiver();
  const options: KafkaSubscribeOptions = { concurrency: PARTITIONS, fromBeginning: true };
  class Sink {
    @Subscribe(config.topic, options)
    onMessage(message: Message<Body>): void {
      receiver.record(message.body);
    }
  }
  const server = new KafkaServer({ broker: { brokers: config.kafkaBrokers, clientId: `bench-lat-kt-${process.pid}` } });
  server.register(new Sink());
  await server.start();
  const body = bodyFactory(config.bytes);
  try {
    return await fixedRate(config, receiver, (seq) => void server.broker.publish(config.topic, body(seq)).catch(failOnError));
  } finally {
    await server.stop();
  }
}

/**
 * kafkajs alone, batching as ktransport's producer does (lingerMs 0): a message
 * goes out at once when no request is in flight, else with the next request.
 * (One send() per message cannot keep up with 1,000/s against acks -1.)
 */
export async function kafkaRaw(config: WorkerConfig): Promise<WorkerResult> {
  await createTopic(config.kafkaBrokers, config.topic);
  const kafka = new Kafka({ brokers: [config.kafkaBrokers], clientId: `bench-lat-raw-${process.pid}`, logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
  const consumer = kafka.consumer({ groupId: `bench-lat-raw-${config.topic}`, maxWaitTimeInMs: FETCH_WAIT_MS });
  const receiver = new Receiver();
  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topic: config.topic, fromBeginning: true });
  const ready = joined(consumer);
  await consumer.run({
    partitionsConsumedConcurrently: PARTITIONS,
    eachMessage: ({ message }) => {
      receiver.record(jsonValue(message.value) as Body);
      return Promise.resolve();
    },
  });
  await ready;
  await sleep(100);
  const body = bodyFactory(config.bytes);
  try {
    const pending: { value: Buffer }[] = [];
    let sending = false;
    const flush = (): void => {
      if (sending || pending.length === 0) return;
      sending = true;
      producer.send({ topic: config.topic, acks: -1, messages: pending.splice(0, BATCH_MESSAGES) }).then(() => {
        sending = false;
        flush();
      }, failOnError);
    };
    return await fixedRate(config, receiver, (seq) => {
      pending.push({ value: Buffer.from(JSON.stringify(body(seq))) });
      flush();
    });
  } finally {
    await consumer.disconnect();
    await producer.disconnect();
  }
}
