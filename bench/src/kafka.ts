import 'reflect-metadata';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Message } from '@ktransport/broker';
import { Subscribe } from '@ktransport/broker';
import { KafkaBroker, KafkaServer, type KafkaSubscribeOptions } from '@ktransport/transport-kafka';
import kafkajs from 'kafkajs';
import { BATCH_MESSAGES, createTopic, FETCH_WAIT_MS, joined, jsonValue, PARTITIONS } from './kafka-util.js';
import {
  type Body,
  bodyFactory,
  log,
  measure,
  Receiver,
  round,
  rssMb,
  throughput,
  WARMUP_BASE,
  withCpu,
  type WorkerConfig,
  type WorkerResult,
} from './common.js';

const { Kafka, logLevel, Partitioners } = kafkajs;

/** The content type ktransport's JSON codec labels records with. */
const CONTENT_TYPE = 'application/json';

/** Kafka end to end through one KafkaBroker (publish) run by a KafkaServer (@Subscribe). */
export async function ktransport(config: WorkerConfig): Promise<WorkerResult> {
  await createTopic(config.kafkaBrokers, config.topic);
  const receiver = new Receiver();
  if (config.publishOnly) return publishOnly(config, receiver);
  const subscribeOptions: KafkaSubscribeOptions = { concurrency: PARTITIONS, fromBeginning: true };
  class Sink {
    @Subscribe(config.topic, subscribeOptions)
    onMessage(message: Message<Body>): void {
      receiver.record(message.body);
    }
  }
  const server = new KafkaServer({ broker: { brokers: config.kafkaBrokers, clientId: `bench-kt-${process.pid}` } });
  server.register(new Sink());
  await server.start();
  const broker = server.broker;
  const body = bodyFactory(config.bytes);
  try {
    return await measure(config, receiver, (seq, done) => {
      broker.publish(config.topic, body(seq)).then(() => done(), done);
    });
  } finally {
    await server.stop();
  }
}

/** A KafkaBroker publishing alone: a message counts once its `publish` resolved (the brokers acknowledged it). */
async function publishOnly(config: WorkerConfig, receiver: Receiver): Promise<WorkerResult> {
  const broker = new KafkaBroker({ brokers: config.kafkaBrokers, clientId: `bench-kt-${process.pid}` });
  await broker.connect();
  const body = bodyFactory(config.bytes);
  try {
    return await measure(config, receiver, (seq, done) => {
      const message = body(seq);
      broker.publish(config.topic, message).then(() => {
        receiver.record(message);
        done();
      }, done);
    });
  } finally {
    await broker.disconnect();
  }
}

/**
 * kafkajs alone: the same idempotent producer, acks -1, batches of the same size,
 * one request in flight; eachMessage consumer. With `headers`, every record also
 * carries the `content-type` header ktransport puts on the wire, and the consumer
 * reads it back: the cost of the wire format in kafkajs, apart from the framework.
 */
export async function raw(config: WorkerConfig, headers = false): Promise<WorkerResult> {
  await createTopic(config.kafkaBrokers, config.topic);
  const kafka = new Kafka({ brokers: [config.kafkaBrokers], clientId: `bench-raw-${process.pid}`, logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
  // Publish-only rounds measure the producer alone: no consumer joins.
  const consumer = config.publishOnly ? undefined : kafka.consumer({ groupId: `bench-raw-${config.topic}`, maxWaitTimeInMs: FETCH_WAIT_MS });
  const receiver = new Receiver();
  let labelled = 0;
  await producer.connect();
  const body = bodyFactory(config.bytes);
  const batches = async (first: number, count: number): Promise<void> => {
    for (let start = 0; start < count; start += BATCH_MESSAGES) {
      const bodies: Body[] = [];
      const messages = [];
      for (let i = start; i < Math.min(count, start + BATCH_MESSAGES); i++) {
        const message = body(first + i);
        const value = Buffer.from(JSON.stringify(message));
        bodies.push(message);
        messages.push(headers ? { value, headers: { 'content-type': CONTENT_TYPE } } : { value });
      }
      await producer.send({ topic: config.topic, acks: -1, messages });
      if (!consumer) for (const message of bodies) receiver.record(message);
    }
  };
  if (consumer) {
    await consumer.connect();
    await consumer.subscribe({ topic: config.topic, fromBeginning: true });
    const ready = joined(consumer);
    await consumer.run({
      partitionsConsumedConcurrently: PARTITIONS,
      eachMessage: ({ message }) => {
        if (headers) labelled += message.headers?.['content-type']?.toString() === CONTENT_TYPE ? 1 : 0;
        receiver.record(jsonValue(message.value) as Body);
        return Promise.resolve();
      },
    });
    await ready;
  }
  try {
    let warmDone = false;
    await Promise.all([
      batches(WARMUP_BASE, config.warmup).then(() => (warmDone = true)),
      receiver.waitFor('warm', config.warmup, config.idleMs, () => warmDone),
    ]);
    let done = false;
    const cpu = process.cpuUsage();
    receiver.start = performance.now();
    await Promise.all([batches(0, config.n).then(() => (done = true)), receiver.waitFor('measured', config.n, config.idleMs, () => done)]);
    const result = withCpu(throughput(receiver, config.n), cpu);
    if (headers && consumer && labelled < config.warmup + result.n)
      throw new Error(`only ${labelled} of ${config.warmup + result.n} records carried the content type`);
    return result;
  } finally {
    await consumer?.disconnect();
    await producer.disconnect();
  }
}

/** kcat (librdkafka) producing and consuming the same messages: the native-client reference. */
export async function kcat(config: WorkerConfig): Promise<WorkerResult> {
  await createTopic(config.kafkaBrokers, config.topic);
  const dir = mkdtempSync(join(tmpdir(), 'ktransport-bench-'));
  const file = join(dir, 'messages.jsonl');
  const body = bodyFactory(config.bytes);
  const lines: string[] = [];
  for (let i = 0; i < config.n; i++) lines.push(JSON.stringify(body(i)));
  writeFileSync(file, `${lines.join('\n')}\n`);
  try {
    const consumer = spawn('kcat', ['-C', '-b', config.kafkaBrokers, '-t', config.topic, '-o', 'beginning', '-c', String(config.n), '-q', '-u', '-f', '%o\n'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let count = 0;
    let last = 0;
    consumer.stdout.on('data', (chunk: Buffer) => {
      for (let i = 0; i < chunk.length; i++) if (chunk[i] === 10) count++;
      last = performance.now();
    });
    const consumed = new Promise<void>((resolve, reject) => {
      consumer.on('error', reject);
      consumer.on('close', (code) => (code === 0 || count >= config.n ? resolve() : reject(new Error(`kcat consumer exited with ${code}`))));
    });
    // Let the consumer fetch metadata and start polling first, as the other implementations' consumers do.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const input = openSync(file, 'r');
    const start = performance.now();
    const producer = spawn('kcat', ['-P', '-b', config.kafkaBrokers, '-t', config.topic, '-X', 'acks=all', '-X', 'enable.idempotence=true'], {
      stdio: [input, 'ignore', 'inherit'],
    });
    closeSync(input);
    const produced = new Promise<void>((resolve, reject) => {
      producer.on('error', reject);
      producer.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`kcat producer exited with ${code}`))));
    });
    const timeout = setTimeout(() => consumer.kill('SIGTERM'), 120_000);
    await Promise.all([produced, consumed]);
    clearTimeout(timeout);
    const elapsed = last - start;
    log(`kcat: ${count} messages consumed`);
    return {
      n: count,
      sent: config.n,
      elapsed_ms: round(elapsed, 1),
      msgs_per_s: Math.round((count / elapsed) * 1000),
      rss_mb: rssMb(),
      note: 'rss is the orchestrating node process, not kcat',
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
