/* global process, console, setTimeout, setInterval, clearInterval, Buffer, URL */
// Subscriber memory under a burst: a ktransport subscriber with a 10 ms handler
// (concurrency 1) while a raw client publishes 200,000 messages to it as fast as
// the broker takes them. The subscriber runs in a child process of its own and
// samples its RSS every 250 ms for 30 s after the burst began; the report is its
// peak RSS and how many messages it had handled. Bounded: the burst and the
// sampling stop by themselves.
// Usage (packages built; Mosquitto on BENCH_MQTT_URL or Kafka on BENCH_KAFKA_BROKERS):
//   node bench/scripts/burst-rss.mjs mqtt|kafka [messages]
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';

const [transport, count, role] = process.argv.slice(2);
const n = Number(count ?? 200_000);
const mqttUrl = process.env.BENCH_MQTT_URL ?? 'mqtt://127.0.0.1:1885';
const kafkaBrokers = process.env.BENCH_KAFKA_BROKERS ?? '127.0.0.1:9092';
const SAMPLE_MS = 30_000;

if (role === 'subscriber') await subscriber(process.argv[5]);
else await main();

async function subscriber(topic) {
  let handled = 0;
  const handler = () => new Promise((resolve) => setTimeout(() => resolve(handled++), 10));
  let broker;
  if (transport === 'mqtt') {
    const { MqttBroker } = await import('@ktransport/transport-mqtt');
    broker = new MqttBroker({ url: mqttUrl, tracing: false, metrics: false });
    await broker.connect();
    await broker.subscribe(topic, handler, { qos: 1 });
  } else {
    const { KafkaBroker } = await import('@ktransport/transport-kafka');
    broker = new KafkaBroker({ brokers: kafkaBrokers, tracing: false, metrics: false });
    await broker.connect();
    await broker.subscribe(topic, handler, { group: `burst-${topic}`, fromBeginning: true });
  }
  process.send({ ready: true });
  let peak = 0;
  await new Promise((resolve) => process.once('message', resolve));
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 250);
  await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
  clearInterval(timer);
  process.send({ peakRssMb: Math.round(peak / 1e6), handled });
  await broker.disconnect().catch(() => undefined);
  process.exit(0);
}

async function main() {
  if (transport !== 'mqtt' && transport !== 'kafka') {
    console.error('usage: node bench/scripts/burst-rss.mjs mqtt|kafka [messages]');
    process.exit(2);
  }
  const topic = transport === 'mqtt' ? `bench/burst/${randomUUID().slice(0, 8)}` : `bench-burst-${randomUUID().slice(0, 8)}`;
  const body = Buffer.from(JSON.stringify({ seq: 0, pad: 'x'.repeat(200) }));
  let publish;
  let close;
  if (transport === 'kafka') {
    const { Kafka, logLevel } = (await import('kafkajs')).default;
    const kafka = new Kafka({ brokers: kafkaBrokers.split(','), logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] });
    await admin.disconnect();
  }
  const child = fork(new URL(import.meta.url), [transport, String(n), 'subscriber', topic], { stdio: 'inherit' });
  const messages = [];
  child.on('message', (m) => messages.push(m));
  const next = () => new Promise((resolve) => child.once('message', resolve));
  await next();
  if (transport === 'mqtt') {
    const mqtt = (await import('mqtt')).default;
    const client = await mqtt.connectAsync(mqttUrl, { protocolVersion: 5, properties: { receiveMaximum: 65535 } });
    publish = (done) => client.publish(topic, body, { qos: 1 }, done);
    close = () => client.endAsync();
  } else {
    const { Kafka, logLevel } = (await import('kafkajs')).default;
    const producer = new Kafka({ brokers: kafkaBrokers.split(','), logLevel: logLevel.NOTHING }).producer();
    await producer.connect();
    const batch = Array.from({ length: 500 }, () => ({ value: body, headers: { 'content-type': 'application/json' } }));
    publish = (done) => producer.send({ topic, messages: batch }).then(() => done(), done);
    close = () => producer.disconnect();
  }
  child.send({ go: true });
  const started = Date.now();
  const per = transport === 'kafka' ? 500 : 1;
  await new Promise((resolve) => {
    let sent = 0;
    let inFlight = 0;
    const pump = () => {
      while (inFlight < 1_000 && sent < n) {
        inFlight++;
        sent += per;
        publish(() => {
          inFlight--;
          if (sent >= n && inFlight === 0) resolve();
          else pump();
        });
      }
    };
    pump();
  });
  const burstMs = Date.now() - started;
  const result = messages.find((m) => m.peakRssMb !== undefined) ?? (await next());
  await close();
  console.log(JSON.stringify({ suite: 'burst-rss', transport, published: n, burst_ms: burstMs, handler_ms: 10, sampled_ms: SAMPLE_MS, ...result }));
}
