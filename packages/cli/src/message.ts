import type { PublishOptions } from '@ktransport/broker';
import { pairs } from './args.js';
import { readAll, type RunIo, UsageError } from './io.js';

/** The options that describe an outgoing message, shared by `publish` and `request`. */
export const MESSAGE_OPTIONS = {
  header: { type: 'string', short: 'H', multiple: true },
  key: { type: 'string', short: 'k' },
  codec: { type: 'string', short: 'c' },
} as const;

/** Their help lines. */
export const MESSAGE_HELP = `  -H, --header name=value  a header (repeatable)
  -k, --key KEY            the message key (Kafka record key; a header elsewhere)
  -c, --codec NAME         json (default: the body must be JSON, sent compact),
                           text (the body's UTF-8 as it is), bytes (the body's
                           bytes as they are, application/octet-stream), msgpack
                           (the body is JSON, sent as MessagePack)`;

/** The codecs the command line offers. */
export const CODECS = ['json', 'text', 'bytes', 'msgpack'] as const;
/** One of `CODECS`. */
export type CliCodec = (typeof CODECS)[number];

/** A codec name from an option's text (`undefined` when the option was not given). */
export function codecOption(name: string, text: string | undefined): CliCodec | undefined {
  if (text === undefined) return undefined;
  if (!CODECS.includes(text as CliCodec)) throw new UsageError(`--${name} must be one of ${CODECS.join(', ')}, not "${text}"`);
  return text as CliCodec;
}

/** The parsed values of `MESSAGE_OPTIONS`. */
export interface MessageValues {
  readonly header?: string[] | undefined;
  readonly key?: string | undefined;
  readonly codec?: string | undefined;
}

/** The body (the argument, or stdin for `-`) encoded as `--codec` says, and the publish options of the message options. */
export async function outgoing(values: MessageValues, bodyArg: string, io: RunIo): Promise<{ body: unknown; options: PublishOptions }> {
  const codec = codecOption('codec', values.codec) ?? 'json';
  const headers = pairs('header', values.header);
  let raw: Uint8Array;
  if (bodyArg === '-') {
    if (!io.stdin) throw new UsageError('no stdin to read the body from');
    raw = await readAll(io.stdin);
  } else raw = Buffer.from(bodyArg, 'utf8');
  const options: PublishOptions = {
    codec,
    ...(Object.keys(headers).length > 0 ? { headers } : {}),
    ...(values.key === undefined ? {} : { key: values.key }),
  };
  return { body: bodyFor(codec, raw), options };
}

function bodyFor(codec: CliCodec, raw: Uint8Array): unknown {
  if (codec === 'bytes') return raw;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    throw new UsageError(`the body is not UTF-8 text; use --codec bytes to send it as it is`);
  }
  if (codec === 'text') return text;
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new UsageError(`the body is not JSON (${error instanceof Error ? error.message : String(error)}); use --codec text to send it as text`);
  }
}
