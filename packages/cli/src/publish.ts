import { parseArgs } from 'node:util';
import type { PublishOptions } from '@ktransport/broker';
import { integer, parse, positive, timeoutMs } from './args.js';
import type { Opened } from './connect.js';
import { EXIT, type RunIo, UsageError } from './io.js';
import { MESSAGE_HELP, MESSAGE_OPTIONS, outgoing } from './message.js';
import { connectOrFail, describe, openFor, sleep } from './session.js';

/** Help of `ktransport publish`. */
export const PUBLISH_HELP = `Usage: ktransport publish <url> <topic> <body | -> [options]

Publishes one message (or --count of them) and waits until the broker accepted
each one. The body is the argument, or stdin when it is "-".

Options:
${MESSAGE_HELP}
      --qos 0|1|2          MQTT quality of service (default 1)
      --retain             MQTT retained message
      --stream NAME        NATS: bind to the stream NAME, or create it capturing
                           the topic's subject (without a stream capturing the
                           subject, the publish fails with NoStreamError)
      --mandatory          AMQP: fail when no queue is bound for the topic
                           (default: the broker drops such a message)
  -n, --count N            publish the body N times (default 1)
      --rate R             at most R publishes per second (default: as fast as
                           the broker confirms them, one at a time)
  -q, --quiet              no line per publish
      --sasl MECHANISM     Kafka SASL: plain (default), scram-sha-256, scram-sha-512
      --timeout SECONDS    limit for connecting (default 10)
  -h, --help               this help

Prints "published <topic>" (with "#i/N" when --count > 1) per confirmed publish,
and a summary on stderr when --count > 1.

Examples:
  ktransport publish mqtt://127.0.0.1:1883 sensors/t1 '{"celsius":21.5}' -H site=berlin
  echo '{"id":7}' | ktransport publish kafka://127.0.0.1:9092 orders - --key 7
  ktransport publish nats://127.0.0.1:4222 orders/eu '"hi"' --stream ORDERS
  ktransport publish amqp://guest:guest@127.0.0.1:5672 logs/app 'started' --codec text
`;

const OPTIONS = {
  ...MESSAGE_OPTIONS,
  qos: { type: 'string' },
  retain: { type: 'boolean' },
  stream: { type: 'string' },
  mandatory: { type: 'boolean' },
  count: { type: 'string', short: 'n' },
  rate: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  sasl: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** `ktransport publish`. */
export async function publishCommand(args: readonly string[], io: RunIo): Promise<number> {
  const { values, positionals } = parse(() => parseArgs({ args: [...args], options: OPTIONS, allowPositionals: true, strict: true }));
  if (values.help) {
    io.stdout.write(PUBLISH_HELP);
    return EXIT.ok;
  }
  const [url, topic, bodyArg, ...extra] = positionals;
  if (url === undefined || topic === undefined) throw new UsageError('publish needs <url> <topic> <body | ->');
  if (bodyArg === undefined) throw new UsageError('publish needs a body: an argument, or - to read it from stdin');
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}" (quote a body with spaces)`);
  const count = integer('count', values.count, 1) ?? 1;
  const rate = positive('rate', values.rate);
  const qos = integer('qos', values.qos, 0, 2);
  const message = await outgoing(values, bodyArg, io);
  const body = message.body;

  const opened = openFor(io, url, topic, values, timeoutMs(values.timeout));
  checkApplies(opened, { qos: values.qos !== undefined || values.retain === true, stream: values.stream !== undefined, mandatory: values.mandatory === true });

  const options: PublishOptions = {
    ...message.options,
    ...(qos === undefined ? {} : { qos: qos as 0 | 1 | 2 }),
    ...(values.retain ? { retain: true } : {}),
    ...(values.mandatory ? { mandatory: true } : {}),
  };

  const failed = await connectOrFail(opened, io);
  if (failed !== undefined) return failed;
  const started = Date.now();
  let sent = 0;
  try {
    for (let i = 1; i <= count; i++) {
      if (io.signal?.aborted) break;
      if (rate !== undefined) await sleep(started + ((i - 1) * 1000) / rate - Date.now(), io.signal);
      if (io.signal?.aborted) break;
      try {
        await opened.broker.publish(topic, body, options);
      } catch (error) {
        io.stderr.write(`ktransport: publish to ${topic} failed${count > 1 ? ` (#${i})` : ''}: ${opened.redact(describe(error))}\n`);
        return EXIT.failure;
      }
      sent++;
      if (!values.quiet) io.stdout.write(`published ${topic}${count > 1 ? ` #${i}/${count}` : ''}\n`);
    }
  } finally {
    await opened.broker.disconnect().catch(() => undefined);
  }
  const ms = Date.now() - started;
  if (count > 1 || sent < count)
    io.stderr.write(`ktransport: published ${sent} of ${count} to ${topic} in ${ms} ms${ms > 0 ? ` (${Math.round((sent * 1000) / ms)}/s)` : ''}\n`);
  return sent < count ? EXIT.interrupted : EXIT.ok;
}

/** Options that only one transport has are usage errors elsewhere, never ignored. */
export function checkApplies(opened: Opened, used: { qos?: boolean; stream?: boolean; mandatory?: boolean }): void {
  if (used.qos && opened.transport !== 'mqtt') throw new UsageError(`--qos and --retain are MQTT options, not ${opened.transport}'s`);
  if (used.stream && opened.transport !== 'nats') throw new UsageError(`--stream is a NATS option, not ${opened.transport}'s`);
  if (used.mandatory && opened.transport !== 'amqp') throw new UsageError(`--mandatory is an AMQP option, not ${opened.transport}'s`);
}
