/**
 * What the profiles showed for a target a run may miss, printed in RESULTS.md
 * under the missed target (matched by id prefix). The numbers come from
 * `node --cpu-prof` on the workers (see bench/README.md, "Profiling"); the
 * CPU µs per message columns of a run show the same split.
 */
export const PROFILE_NOTES: readonly { readonly prefix: string; readonly text: string }[] = [
  {
    prefix: 'mqtt-raw',
    text:
      'Profile: the framework code itself (pipeline, middleware, routing, acks, sender) is about 4-6 µs of CPU per message; the rest of the gap is the wire format. ' +
      'Every ktransport message carries its codec\'s content type (the MQTT 5 contentType property), which the raw baseline does not send, and the receive side parses it ' +
      "in mqtt-packet inside mqtt.js, which a transport cannot replace without patching mqtt.js for the whole process. A `message-id` user property (`messageIds: true`) " +
      'costs another ~18 µs per message in mqtt.js, which is why it is off by default (compare `raw+headers`, which sends both and which ktransport beats). ' +
      'Short single rounds on this shared 2-core machine also move a few percent either way: compare the CPU µs per message column.',
  },
  {
    prefix: 'mqtt-tracing',
    text:
      'Profile: with the OpenTelemetry SDK installed, each message makes two real spans (send and process). The SDK (span creation, attribute sanitising, id generation, ' +
      'the batch processor) and the AsyncLocalStorage context manager, whose promise hooks tax every promise in the process on Node 20, cost about 15 µs per message, ' +
      'plus a `traceparent` user property on the wire. That is more than the whole 0.80 budget (about 5 µs over raw mqtt.js at 20 µs per message); ktransport\'s own tracing code is about 1 µs of it.',
  },
  {
    prefix: 'mqtt-nestjs',
    text:
      'NestJS is measured with the same window of messages in flight as every other implementation, and with that its `emit` path reaches about half of raw mqtt.js, ' +
      'not the 4,600 msg/s of a serial emit loop. With NestJS at roughly 0.4-0.6 of raw, a ratio of 10 would need ktransport to be 4-5 times faster than mqtt.js itself.',
  },
  {
    prefix: 'kafka-raw',
    text:
      'Profile: mixing implementations shows the cost on the producer side and in the record headers: kafkajs encodes every header with a new encoder on send and ' +
      'a new Buffer on receive, so ktransport\'s `content-type` header costs several µs per message end to end that bare records do not pay. ' +
      'The KafkaBroker itself (batching on setImmediate, one heartbeat timer per batch) is about 5 µs per message. See the Kafka proposals in bench/README.md.',
  },
  {
    prefix: 'latency',
    text:
      'Latency at 1,000 msg/s is sensitive to other load on the machine (the quick run measures 3 s once): a full run on a quiet machine measured the MQTT p99 within 0.05-0.15 ms of raw mqtt.js. ' +
      'Over Kafka the KafkaBroker\'s consumer commits at the end of every fetched batch before kafkajs fetches the next one; runs on this machine swing by several ms between rounds.',
  },
  {
    prefix: 'scale',
    text:
      'Delivery with 10,000 subscriptions costs the same CPU per message as with one within noise (topic trie and subscription identifiers are constant time); ' +
      'differences in msg/s between single short rounds come from other load on the machine. Compare the CPU µs per message column.',
  },
];
