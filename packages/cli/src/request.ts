import { parseArgs } from 'node:util';
import { ConfigurationError, HEADER, type Message, RemoteError, type RequestOptions, supportsRequest, TimeoutError } from '@ktransport/broker';
import { integer, parse, timeoutMs } from './args.js';
import { EXIT, type RunIo, UsageError } from './io.js';
import { codecOption, MESSAGE_HELP, MESSAGE_OPTIONS, outgoing } from './message.js';
import { checkApplies } from './publish.js';
import { codecFor, decodedLine, printable, readable } from './render.js';
import { connectOrFail, describe, openFor } from './session.js';

/** Help of `ktransport request`. */
export const REQUEST_HELP = `Usage: ktransport request <url> <topic> <body | -> [options]

Sends a request (a message with reply-to and correlation-id headers) and prints
the reply of the service that answers it. The body is the argument, or stdin
when it is "-". Works on every transport whose broker has request() (all five;
one without it says so and exits 1).

Options:
${MESSAGE_HELP}
      --reply-codec NAME   json, text, bytes or msgpack: reads a reply that has
                           no content-type header (a foreign responder); default:
                           as tail shows it (JSON if it parses, else text, else
                           base64)
      --json               the reply as one JSON object (topic, headers,
                           contentType, encoding, body: as tail --json)
      --qos 0|1|2          MQTT quality of service of the request (default 1)
      --stream NAME        NATS: bind to the stream NAME, or create it capturing
                           the topic's subject (a request is a stored JetStream
                           publish: without a stream capturing the subject it
                           fails with NoStreamError)
      --mandatory          AMQP: fail at once (UnroutableError) when no queue is
                           bound for the topic, instead of waiting for --timeout
      --sasl MECHANISM     Kafka SASL: plain (default), scram-sha-256, scram-sha-512
      --timeout SECONDS    wait for the reply (default 10; fractions allowed:
                           0.5). Connecting has 10 s, or --timeout when longer
  -h, --help               this help

Exit status: 0 a reply came (printed on stdout); 124 no reply within --timeout
(nobody serves the topic, or the responder returned nothing); 1 the responder
failed (its error type and message are printed), the broker refused or failed,
or the transport cannot carry requests; 2 usage error; 130 SIGINT/SIGTERM
before the reply.

Examples:
  ktransport request mqtt://127.0.0.1:1883 prices/quote '{"sku":"A-1"}' --json
  echo '{"sku":"A-1"}' | ktransport request mqtt://127.0.0.1:1883 prices/quote - --timeout 30
  ktransport request mqtt://127.0.0.1:1883 clock/now '' --codec text --reply-codec text
  ktransport request nats://127.0.0.1:4222 prices/quote '{"sku":"A-1"}' --stream PRICES
  ktransport request amqp://guest:guest@127.0.0.1:5672 prices/quote '{"sku":"A-1"}' --mandatory
`;

const OPTIONS = {
  ...MESSAGE_OPTIONS,
  'reply-codec': { type: 'string' },
  json: { type: 'boolean' },
  qos: { type: 'string' },
  stream: { type: 'string' },
  mandatory: { type: 'boolean' },
  sasl: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** `ktransport request`. */
export async function requestCommand(args: readonly string[], io: RunIo): Promise<number> {
  const { values, positionals } = parse(() => parseArgs({ args: [...args], options: OPTIONS, allowPositionals: true, strict: true }));
  if (values.help) {
    io.stdout.write(REQUEST_HELP);
    return EXIT.ok;
  }
  const [url, topic, bodyArg, ...extra] = positionals;
  if (url === undefined || topic === undefined) throw new UsageError('request needs <url> <topic> <body | ->');
  if (bodyArg === undefined) throw new UsageError('request needs a body: an argument, or - to read it from stdin');
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}" (quote a body with spaces)`);
  const replyCodec = codecOption('reply-codec', values['reply-codec']);
  const qos = integer('qos', values.qos, 0, 2);
  const limit = timeoutMs(values.timeout);
  // A short wait for the reply is no reason to give up on a broker that takes a moment to connect (Kafka).
  const connectLimit = Math.max(limit, timeoutMs(undefined));
  const message = await outgoing(values, bodyArg, io);

  const opened = openFor(io, url, topic, values, connectLimit);
  checkApplies(opened, { qos: qos !== undefined, stream: values.stream !== undefined, mandatory: values.mandatory === true });
  const broker = opened.broker;
  if (!supportsRequest(broker)) {
    io.stderr.write(`ktransport: the ${opened.transport} transport has no request-reply in this version\n`);
    return EXIT.failure;
  }
  // A reply without content-type is kept as bytes (unless --reply-codec says how to read it) and shown as tail shows a payload.
  const options: RequestOptions = {
    ...message.options,
    ...(qos === undefined ? {} : { qos: qos as 0 | 1 | 2 }),
    ...(values.mandatory ? { mandatory: true } : {}),
    timeoutMs: limit,
    replyCodec: replyCodec ?? 'bytes',
  };

  const failed = await connectOrFail(opened, io);
  if (failed !== undefined) return failed;
  let stop = (): void => undefined;
  const aborted = new Promise<'aborted'>((resolve) => {
    stop = () => resolve('aborted');
    if (io.signal?.aborted) stop();
    io.signal?.addEventListener('abort', stop, { once: true });
  });
  let status: number;
  try {
    io.stderr.write(`ktransport: request to ${topic} on ${opened.displayUrl}: waiting for the reply (at most ${limit} ms)\n`);
    const outcome = await Promise.race([
      broker.request(topic, message.body, options).then(
        (reply) => ({ reply }),
        (error: unknown) => ({ error }),
      ),
      aborted,
    ]);
    if (outcome === 'aborted') {
      io.stderr.write(`ktransport: request to ${topic} interrupted before its reply\n`);
      status = EXIT.interrupted;
    } else if ('reply' in outcome) {
      const line = decodedLine(outcome.reply, replyCodecOf(outcome.reply, replyCodec));
      io.stdout.write(values.json ? `${JSON.stringify(line)}\n` : readable(line));
      status = EXIT.ok;
    } else status = failure(outcome.error, topic, opened.redact, io);
  } finally {
    io.signal?.removeEventListener('abort', stop);
  }
  try {
    await broker.disconnect();
  } catch (error) {
    io.stderr.write(`ktransport: ${opened.redact(describe(error))}\n`);
    if (status === EXIT.ok) status = EXIT.failure;
  }
  return status;
}

/** The codec that decoded a reply: its content type's, else --reply-codec, else bytes. */
function replyCodecOf(reply: Message, replyCodec: string | undefined): string {
  const contentType = reply.headers[HEADER.contentType];
  return (contentType === undefined ? undefined : codecFor(contentType)) ?? replyCodec ?? 'bytes';
}

/** Reports why the request got no reply and gives the exit status. */
function failure(error: unknown, topic: string, redact: (text: string) => string, io: RunIo): number {
  if (error instanceof TimeoutError) {
    // The core's message names the topic and the limit ("no reply to the request to t within 500 ms").
    io.stderr.write(`ktransport: ${redact(describe(error))} (nobody serves the topic, or its responder returned nothing)\n`);
    return EXIT.noReply;
  }
  if (error instanceof RemoteError) {
    io.stderr.write(`ktransport: the responder on ${topic} failed: ${printable(redact(`${error.errorType}: ${error.remoteMessage}`))}\n`);
    return EXIT.failure;
  }
  if (error instanceof ConfigurationError) {
    io.stderr.write(`ktransport: this broker cannot carry the request to ${topic}: ${redact(describe(error))}\n`);
    return EXIT.failure;
  }
  io.stderr.write(`ktransport: request to ${topic} failed: ${redact(describe(error))}\n`);
  return EXIT.failure;
}
