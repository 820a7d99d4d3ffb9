import { parseArgs } from 'node:util';
import { ConfigurationError, type SubscribeOptions } from '@ktransport/broker';
import { integer, parse, timeoutMs } from './args.js';
import { EXIT, type RunIo, UsageError } from './io.js';
import { checkApplies } from './publish.js';
import { readable, tailLine } from './render.js';
import { connectOrFail, describe, openFor } from './session.js';

/** Help of `ktransport tail`. */
export const TAIL_HELP = `Usage: ktransport tail <url> <filter> [options]

Prints the messages published to <filter> (a topic, or MQTT wildcards + and #
where the transport has them) until Ctrl-C/SIGTERM or --count messages. Each
message is acknowledged after it was printed.

Options:
  -g, --group NAME       share the messages with the other members of the group
                         (Kafka consumer group, MQTT shared subscription, AMQP
                         durable queue, NATS durable consumer, Redis consumer
                         group: all but MQTT's stay on the broker afterwards)
      --from-beginning   Kafka: a new group starts at the oldest record; NATS:
                         the consumer starts at the stream's first message
                         (deliverPolicy all); Redis: a new --group starts at the
                         stream's first entry. A usage error on MQTT and AMQP,
                         which keep no history for a new subscriber
  -n, --count N          exit 0 after N messages
      --json             one JSON object per line: topic, key, id, timestamp,
                         partition, offset, headers, contentType, encoding, body
      --qos 0|1|2        MQTT subscription quality of service (default 1)
      --stream NAME      NATS: bind to the stream NAME, or create it capturing
                         the filter's subjects (without one, the subscription
                         fails unless a stream captures the filter)
      --sasl MECHANISM   Kafka SASL: plain (default), scram-sha-256, scram-sha-512
      --timeout SECONDS  limit for connecting (default 10)
  -h, --help             this help

The body is decoded by its content-type header: json and msgpack as values, text
as text; without one, JSON if it parses, else UTF-8 text. A body that cannot be
decoded is shown as text or base64 ("encoding": "base64"), never dropped.
stderr says "waiting for messages" once the subscription is in place.

Examples:
  ktransport tail mqtt://127.0.0.1:1883 'sensors/#'
  ktransport tail kafka://127.0.0.1:9092 orders --from-beginning --count 10 --json
  ktransport tail nats://127.0.0.1:4222 'orders/+' --stream ORDERS
  ktransport tail redis://127.0.0.1:6379 orders --group audit --from-beginning
`;

const OPTIONS = {
  group: { type: 'string', short: 'g' },
  'from-beginning': { type: 'boolean' },
  count: { type: 'string', short: 'n' },
  json: { type: 'boolean' },
  qos: { type: 'string' },
  stream: { type: 'string' },
  sasl: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Thrown for messages beyond --count: not acknowledged, so the broker keeps them for others. */
class BeyondCount extends Error {}

/** `ktransport tail`. */
export async function tailCommand(args: readonly string[], io: RunIo): Promise<number> {
  const { values, positionals } = parse(() => parseArgs({ args: [...args], options: OPTIONS, allowPositionals: true, strict: true }));
  if (values.help) {
    io.stdout.write(TAIL_HELP);
    return EXIT.ok;
  }
  const [url, filter, ...extra] = positionals;
  if (url === undefined || filter === undefined) throw new UsageError('tail needs <url> <filter>');
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  const count = integer('count', values.count, 1);
  const qos = integer('qos', values.qos, 0, 2);
  const fromBeginning = values['from-beginning'] === true;
  const opened = openFor(io, url, filter, values, timeoutMs(values.timeout));
  checkApplies(opened, { qos: qos !== undefined, stream: values.stream !== undefined });
  if (fromBeginning && (opened.transport === 'mqtt' || opened.transport === 'amqp')) {
    throw new UsageError(`--from-beginning: ${opened.transport} keeps no history for a new subscriber (it works on kafka, nats and redis)`);
  }
  if (fromBeginning && opened.transport === 'redis' && values.group === undefined) {
    throw new UsageError('--from-beginning on redis needs --group (a new consumer group starts at the first entry)');
  }

  const options: SubscribeOptions = {
    codec: 'bytes', // the payload as it came: decoded here for display, so no body can fail the handler
    ...(values.group === undefined ? {} : { group: values.group }),
    ...(qos === undefined ? {} : { qos: qos as 0 | 1 | 2 }),
    ...(fromBeginning && (opened.transport === 'kafka' || opened.transport === 'redis') ? { fromBeginning: true } : {}),
    ...(fromBeginning && opened.transport === 'nats' ? { deliverPolicy: 'all' as const } : {}),
  };

  const failed = await connectOrFail(opened, io);
  if (failed !== undefined) return failed;
  let seen = 0;
  let reached!: () => void;
  const enough = new Promise<void>((resolve) => (reached = resolve));
  const aborted = new Promise<void>((resolve) => {
    if (io.signal?.aborted) resolve();
    io.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  let status: number = EXIT.ok;
  try {
    await opened.broker.subscribe(
      filter,
      (message, context) => {
        if (count !== undefined && seen >= count) throw new BeyondCount('beyond --count');
        seen++;
        const line = tailLine(message, context.payload);
        io.stdout.write(values.json ? `${JSON.stringify(line)}\n` : readable(line));
        if (seen === count) reached();
      },
      options,
    );
    io.stderr.write(`ktransport: tail ${filter} on ${opened.displayUrl}: waiting for messages${count === undefined ? ' (Ctrl-C to stop)' : ''}\n`);
    await Promise.race([enough, aborted]);
  } catch (error) {
    io.stderr.write(`ktransport: cannot subscribe to ${filter} on ${opened.displayUrl}: ${opened.redact(describe(error))}\n`);
    status = error instanceof ConfigurationError ? EXIT.usage : EXIT.failure;
  }
  try {
    await opened.broker.disconnect();
  } catch (error) {
    io.stderr.write(`ktransport: ${opened.redact(describe(error))}\n`);
    if (status === EXIT.ok) status = EXIT.failure;
  }
  return status;
}
