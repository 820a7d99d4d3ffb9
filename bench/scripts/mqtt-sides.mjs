/* global process, console, performance, Buffer, setTimeout */
// Splits the MQTT cost between the publishing and the subscribing side: one process publishes
// with ktransport or mqtt.js alone and receives with either, QoS 0, 256 B bodies.
// Usage (Mosquitto on BENCH_MQTT_URL, default mqtt://127.0.0.1:1885; packages built):
//   node bench/scripts/mqtt-sides.mjs kt|raw kt|raw [messages]
// Prints the CPU µs per message of the whole process; run the four pairs alternately.
import { MqttBroker } from '@ktransport/transport-mqtt';
import mqtt from 'mqtt';

const [publisherKind, subscriberKind, count] = process.argv.slice(2);
if (!['kt', 'raw'].includes(publisherKind) || !['kt', 'raw'].includes(subscriberKind)) {
  console.error('usage: node bench/scripts/mqtt-sides.mjs kt|raw kt|raw [messages]');
  process.exit(2);
}
const url = process.env.BENCH_MQTT_URL ?? 'mqtt://127.0.0.1:1885';
const topic = `bench/sides/${process.pid}`;
const n = Number(count ?? 100_000);
const window = 1_000;
const clientOptions = (clientId) => ({ protocolVersion: 5, clientId, clean: true, keepalive: 60 });

let received = 0;
let expected = 0;
let arrived = () => undefined;
const onMessage = () => {
  if (++received === expected) arrived();
};

let subscriber;
if (subscriberKind === 'kt') {
  subscriber = new MqttBroker({ url });
  await subscriber.connect();
  await subscriber.subscribe(topic, onMessage, { qos: 0 });
} else {
  subscriber = await mqtt.connectAsync(url, clientOptions(`bench-sides-sub-${process.pid}`));
  subscriber.on('message', (_topic, payload) => {
    JSON.parse(payload.toString());
    onMessage();
  });
  await subscriber.subscribeAsync(topic, { qos: 0 });
}

let publisher;
let publish;
if (publisherKind === 'kt') {
  publisher = new MqttBroker({ url });
  await publisher.connect();
  publish = (body, done) => publisher.publish(topic, body, { qos: 0 }).then(() => done(), done);
} else {
  publisher = await mqtt.connectAsync(url, clientOptions(`bench-sides-pub-${process.pid}`));
  publish = (body, done) => publisher.publish(topic, Buffer.from(JSON.stringify(body)), { qos: 0 }, done);
}

const pad = 'x'.repeat(200);
/** Publishes `total` messages with at most `window` in flight and waits until all arrived (or 30 s passed). */
async function run(total) {
  received = 0;
  expected = total;
  const all = new Promise((resolve) => (arrived = resolve));
  await new Promise((resolve, reject) => {
    let next = 0;
    let inFlight = 0;
    const done = (error) => {
      inFlight--;
      if (error) reject(error);
      else fill();
    };
    const fill = () => {
      while (inFlight < window && next < total) {
        inFlight++;
        publish({ seq: next++, t: performance.now(), pad }, done);
      }
      if (next >= total && inFlight === 0) resolve();
    };
    fill();
  });
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${received} of ${total} arrived`)), 30_000).unref());
  await Promise.race([all, timeout]);
}

await run(10_000);
const cpu = process.cpuUsage();
const started = performance.now();
await run(n);
const used = process.cpuUsage(cpu);
const seconds = (performance.now() - started) / 1000;
console.log(
  `publisher=${publisherKind} subscriber=${subscriberKind}: ${((used.user + used.system) / n).toFixed(2)} µs CPU/msg, ${Math.round(n / seconds)} msg/s`,
);
await (publisherKind === 'kt' ? publisher.disconnect() : publisher.endAsync());
await (subscriberKind === 'kt' ? subscriber.disconnect() : subscriber.endAsync());
