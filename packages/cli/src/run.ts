import { readFileSync } from 'node:fs';
import { ASYNCAPI_HELP, asyncapiCommand } from './asyncapi.js';
import { maskCredentials, SCHEME_LIST } from './connect.js';
import { EXIT, type RunIo, UsageError } from './io.js';
import { PUBLISH_HELP, publishCommand } from './publish.js';
import { REQUEST_HELP, requestCommand } from './request.js';
import { TAIL_HELP, tailCommand } from './tail.js';

/** Top-level help. */
export const HELP = `Usage: ktransport <command> [options]

Commands:
  publish <url> <topic> <body | ->   publish a message and wait for the broker's confirmation
  request <url> <topic> <body | ->   send a request and print its reply
  tail <url> <filter>                print the messages of a topic or filter
  asyncapi <module>                  print the AsyncAPI document of a module's services

"ktransport <command> --help" describes a command and its options.

The URL's scheme picks the transport: mqtt:// mqtts:// ws:// wss:// (MQTT),
kafka://host:port[,host:port] (Kafka), amqp:// amqps:// (RabbitMQ), nats://
tls:// (NATS JetStream), redis:// rediss:// (Redis Streams). Credentials come
from the URL (mqtt://user:password@host) or from KTRANSPORT_USERNAME and
KTRANSPORT_PASSWORD; passwords are masked (***) in every message.

Exit status: 0 done, 1 the broker, a module or a request's responder failed,
2 usage error, 124 no reply to a request within --timeout, 130 publish or
request interrupted (SIGINT/SIGTERM) before it sent everything or got its reply.
`;

const COMMANDS: Readonly<Record<string, { help: string; run: (args: readonly string[], io: RunIo) => Promise<number> }>> = {
  publish: { help: PUBLISH_HELP, run: publishCommand },
  request: { help: REQUEST_HELP, run: requestCommand },
  tail: { help: TAIL_HELP, run: tailCommand },
  asyncapi: { help: ASYNCAPI_HELP, run: asyncapiCommand },
};

/**
 * Runs one `ktransport` command line (without the program name, e.g.
 * `['publish', 'mqtt://127.0.0.1:1883', 'a/b', '{}']`) and resolves with its
 * exit status (see `EXIT`). Output goes to `io`; it never exits the process and
 * never rejects.
 */
export async function run(argv: readonly string[], io: RunIo): Promise<number> {
  const [command, ...args] = argv;
  try {
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      const topic = command === 'help' ? args[0] : undefined;
      io.stdout.write(topic !== undefined && COMMANDS[topic] ? COMMANDS[topic].help : HELP);
      return command === undefined ? EXIT.usage : EXIT.ok;
    }
    if (command === '--version' || command === '-v') {
      io.stdout.write(`${version()}\n`);
      return EXIT.ok;
    }
    const found = COMMANDS[command];
    if (!found) throw new UsageError(`unknown command "${command}"; commands: ${Object.keys(COMMANDS).join(', ')}`);
    return await found.run(args, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`ktransport: ${error.message}\nRun "ktransport ${COMMANDS[command ?? ''] ? `${command} ` : ''}--help" for usage.\n`);
      return EXIT.usage;
    }
    // Constructors check their options at once: a ConfigurationError is the command line's fault.
    const usage = error instanceof Error && (error as { code?: unknown }).code === 'CONFIGURATION_ERROR';
    // No broker is open here to know the secrets: mask anything shaped like URL credentials.
    io.stderr.write(`ktransport: ${maskCredentials(error instanceof Error ? error.message : String(error))}\n`);
    return usage ? EXIT.usage : EXIT.failure;
  }
}

function version(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
}

export { SCHEME_LIST };
