import { CodecRegistry, HEADER, type Message } from '@ktransport/broker';

/** How `body` of a `--json` line represents the payload. */
export type BodyEncoding = 'json' | 'text' | 'base64';

/** A received message as `tail --json` prints it: one JSON object per line. */
export interface TailLine {
  readonly topic: string;
  readonly key?: string;
  readonly id?: string;
  readonly timestamp?: number;
  readonly partition?: number;
  readonly offset?: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly contentType?: string;
  /** `json`: `body` is the decoded value; `text`: a string; `base64`: the raw bytes in base64. */
  readonly encoding: BodyEncoding;
  readonly body: unknown;
  /** Why the payload could not be decoded by its content type, when it could not. */
  readonly decodeError?: string;
}

const registry = new CodecRegistry();
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes a payload for display, never throwing: by its content type when a
 * codec has it, else as JSON, else as UTF-8 text, else base64.
 */
export function decodeBody(payload: Uint8Array, contentType: string | undefined): Pick<TailLine, 'encoding' | 'body' | 'decodeError'> {
  let decodeError: string | undefined;
  if (contentType !== undefined) {
    try {
      const codec = registry.forContentType(contentType);
      if (codec.name === 'text') return { encoding: 'text', body: utf8.decode(payload) };
      if (codec.name !== 'bytes') return { encoding: 'json', body: jsonSafe(codec.decode(payload), 0) };
    } catch (error) {
      decodeError = error instanceof Error ? error.message : String(error);
    }
  }
  const extra = decodeError === undefined ? {} : { decodeError };
  let text: string | undefined;
  try {
    text = utf8.decode(payload);
  } catch {
    return { encoding: 'base64', body: Buffer.from(payload).toString('base64'), ...extra };
  }
  if (contentType === undefined) {
    try {
      return { encoding: 'json', body: JSON.parse(text) as unknown };
    } catch {
      // not JSON: shown as text
    }
  }
  return { encoding: 'text', body: text, ...extra };
}

/** Values a codec (msgpack) may give that JSON cannot carry, made JSON-safe: bytes as base64, bigints as strings. */
function jsonSafe(value: unknown, depth: number): unknown {
  if (depth > 64) return '[too deep]';
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return { base64: Buffer.from(value).toString('base64') };
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map((v) => jsonSafe(v, depth + 1));
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), jsonSafe(v, depth + 1)]));
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonSafe(v, depth + 1)]));
  return value;
}

/** The `--json` line of a message whose payload arrived undecoded (the `bytes` codec). */
export function tailLine(message: Message, payload: Uint8Array): TailLine {
  return messageLine(message, decodeBody(payload, message.headers[HEADER.contentType]));
}

/**
 * The `--json` line of a message whose body a codec named `codec` has decoded
 * already (a reply, which the requester decodes): bytes (the `bytes` codec)
 * are shown as `tail` shows a payload, a `text` codec's string as text, any
 * other value as JSON.
 */
export function decodedLine(message: Message, codec: string): TailLine {
  const contentType = message.headers[HEADER.contentType];
  const body = message.body;
  if (body instanceof Uint8Array) return messageLine(message, decodeBody(body, contentType));
  if (codec === 'text' && typeof body === 'string') return messageLine(message, { encoding: 'text', body });
  return messageLine(message, { encoding: 'json', body: jsonSafe(body, 0) });
}

/** The name of the codec that reads `contentType` (undefined when none does). */
export function codecFor(contentType: string): string | undefined {
  try {
    return registry.forContentType(contentType).name;
  } catch {
    return undefined;
  }
}

function messageLine(message: Message, decoded: Pick<TailLine, 'encoding' | 'body' | 'decodeError'>): TailLine {
  const contentType = message.headers[HEADER.contentType];
  return {
    topic: message.topic,
    ...(message.key === undefined ? {} : { key: message.key }),
    ...(message.id === undefined ? {} : { id: message.id }),
    ...(message.timestamp === undefined ? {} : { timestamp: message.timestamp }),
    ...(message.partition === undefined ? {} : { partition: message.partition }),
    ...(message.offset === undefined ? {} : { offset: message.offset }),
    headers: { ...message.headers },
    ...(contentType === undefined ? {} : { contentType }),
    ...decoded,
  };
}

/** Text made safe for a terminal: control characters (escape sequences included) as `\uXXXX`. */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex -- exactly the characters to escape
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The readable view of a message: a header line, one line per header, the body. */
export function readable(line: TailLine): string {
  const meta = [
    line.key === undefined ? '' : `key=${line.key}`,
    line.partition === undefined ? '' : `partition=${line.partition}`,
    line.offset === undefined ? '' : `offset=${line.offset}`,
    line.id === undefined ? '' : `id=${line.id}`,
    line.timestamp === undefined ? '' : new Date(line.timestamp).toISOString(),
  ].filter(Boolean);
  const out = [`── ${line.topic}${meta.length ? `  ${meta.join('  ')}` : ''}`];
  for (const [name, value] of Object.entries(line.headers)) out.push(`   ${name}: ${value}`);
  const body =
    line.encoding === 'json' ? JSON.stringify(line.body, null, 2) : line.encoding === 'text' ? String(line.body) : `(binary, base64) ${String(line.body)}`;
  if (line.decodeError !== undefined) out.push(`   (not decodable as ${line.contentType ?? 'its content type'}: ${line.decodeError})`);
  out.push(body);
  return `${printable(out.join('\n'))}\n`;
}
