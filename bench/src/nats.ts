import type { Message } from '@ktransport/broker';
import { NatsBroker } from '@ktransport/transport-nats';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { type Body, bodyFactory, measure, Receiver, type WorkerConfig, type WorkerResult } from './common.js';

/** The machine's nats-server (JetStream) unless BENCH_NATS_URL says otherwise. */
const URL = process.env.BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';
/** Messages delivered and not yet acknowledged, the same for both (ktransport's maxAckPending). */
const WINDOW = 1_000;
/** The content type ktransport's JSON codec labels messages with. */
const CONTENT_TYPE = 'application/json';
const GROUP = 'bench';

/** The round's subject (topic `bench/x` → subject `bench.x`) and a stream name for it. */
function names(topic: string): { subject: string; stream: string } {
  const subject = topic.replaceAll('/', '.');
  return { subject, stream: subject.replace(/[^A-Za-z0-9_-]/g, '_') };
}

/** Deletes the round's stream with a connection of its own. */
async function cleanUp(stream: string): Promise<void> {
  const nc = await connect({ servers: URL.replace(/^nats:\/\//, '') });
  try {
    await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
  } finally {
    await nc.close();
  }
}

/**
 * NATS JetStream end to end through one NatsBroker: publishes resolved by their
 * PubAck (`window` in flight) into a file stream the broker creates; one group
 * subscription (a durable pull consumer, max_ack_pending 1,000) whose handler
 * counts, acknowledged after each message.
 */
export async function ktransport(config: WorkerConfig): Promise<WorkerResult> {
  const { stream } = names(config.topic);
  const receiver = new Receiver();
  const broker = new NatsBroker({
    url: URL,
    streams: [{ name: stream, subjects: [names(config.topic).subject] }],
    maxAckPending: WINDOW,
    tracing: false,
    metrics: false,
  });
  await broker.connect();
  try {
    await broker.subscribe<Body>(config.topic, (message: Message<Body>) => void receiver.record(message.body), { group: GROUP, concurrency: 64 });
    const body = bodyFactory(config.bytes);
    return await measure(config, receiver, (seq, done) => {
      broker.publish(config.topic, body(seq)).then(() => done(), done);
    });
  } finally {
    await broker.disconnect();
    await cleanUp(stream);
  }
}

/**
 * nats.js alone, the same work: JSON bodies published with the content type
 * header (`window` in flight, each resolved by its PubAck) into a file stream; a
 * durable pull consumer (explicit ack, max_ack_pending 1,000) consumed with
 * `consume` (1,000 messages buffered), each message decoded, counted and acknowledged.
 * The connection has `noAsyncTraces`, as NatsBroker's has: without it nats.js makes a
 * stack-captured Error per request, which would count against raw alone.
 */
export async function raw(config: WorkerConfig): Promise<WorkerResult> {
  const { subject, stream } = names(config.topic);
  const receiver = new Receiver();
  const nc = await connect({ servers: URL.replace(/^nats:\/\//, ''), noAsyncTraces: true });
  try {
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    await jsm.streams.add({ name: stream, subjects: [subject] });
    await jsm.consumers.add(stream, {
      durable_name: GROUP,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      max_ack_pending: WINDOW,
      filter_subject: subject,
    });
    const consumer = await js.consumers.get(stream, GROUP);
    const messages = await consumer.consume({
      max_messages: WINDOW,
      callback: (m) => {
        if (m.headers?.get('content-type') !== CONTENT_TYPE) throw new Error('a message without the content type');
        receiver.record(m.json<Body>());
        m.ack();
      },
    });
    try {
      const body = bodyFactory(config.bytes);
      const encoder = new TextEncoder();
      return await measure(config, receiver, (seq, done) => {
        const h = headers();
        h.set('content-type', CONTENT_TYPE);
        js.publish(subject, encoder.encode(JSON.stringify(body(seq))), { headers: h }).then(() => done(), done);
      });
    } finally {
      await messages.close();
    }
  } finally {
    await nc.close();
    await cleanUp(stream);
  }
}
