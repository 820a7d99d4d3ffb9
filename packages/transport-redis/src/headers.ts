import { type Headers, PublishError } from '@ktransport/broker';
import { headerText, invalidTextIndex } from '@ktransport/broker/transport';

/** The entry field that holds the payload: exactly the codec's bytes. */
export const PAYLOAD_FIELD = 'payload';
/** The entry field (and header) that carries the message key. */
export const KEY_HEADER = 'message-key';

/**
 * A header name or value that ktransport does not write: empty names, the
 * payload field's name, and text with control characters, unpaired surrogates
 * or noncharacters. Not retriable; the connection is not affected.
 */
export class InvalidHeaderError extends PublishError {
  override readonly code = 'INVALID_HEADER';
  /** The header's name, escaped and shortened for display. */
  readonly header: string;
  constructor(topic: string, header: string, reason: string) {
    const name = headerText(header, 200);
    super(topic, `cannot publish to ${headerText(topic, 200)}: header "${name}" ${reason}`, { retriable: false });
    this.header = name;
  }
}

/**
 * The fields of a stream entry: `payload` with the codec's bytes first, then
 * one field per header (`content-type`, `message-key`, trace context, the
 * caller's headers), name and value as they are. Throws InvalidHeaderError
 * before anything is written for a header ktransport does not write.
 */
export function toFields(topic: string, payload: Uint8Array, headers: Headers, key: string | undefined): (string | Buffer)[] {
  const fields: (string | Buffer)[] = [PAYLOAD_FIELD, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)];
  if (key !== undefined) headers[KEY_HEADER] = key;
  for (const name in headers) {
    // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- a key of its own for...in
    const value = headers[name]!;
    if (name.length === 0) throw new InvalidHeaderError(topic, name, 'has an empty name');
    if (name === PAYLOAD_FIELD) throw new InvalidHeaderError(topic, name, `is named like the payload field "${PAYLOAD_FIELD}"; choose another name`);
    const badName = invalidTextIndex(name);
    if (badName >= 0) throw new InvalidHeaderError(topic, name, `has a character headers must not carry in its name (at index ${badName})`);
    if (typeof value !== 'string') throw new InvalidHeaderError(topic, name, `has a ${typeof value} value; header values are strings`);
    const badValue = invalidTextIndex(value);
    if (badValue >= 0) throw new InvalidHeaderError(topic, name, `has a character headers must not carry in its value (at index ${badValue})`);
    fields.push(name, value);
  }
  return fields;
}

/** A received entry's fields: the payload (undefined when the entry has no payload field) and every other field as a header. */
export interface Fields {
  readonly payload: Buffer | undefined;
  readonly headers: Headers;
}

/**
 * Reads an entry's fields (names and values as Redis returned them). Names and
 * values are read as UTF-8; when a foreign writer repeated a field, the last
 * one wins.
 */
export function fromFields(list: readonly unknown[]): Fields {
  let payload: Buffer | undefined;
  const headers: Headers = {};
  for (let i = 0; i + 1 < list.length; i += 2) {
    const name = text(list[i]);
    const value = list[i + 1];
    if (name === PAYLOAD_FIELD) payload = Buffer.isBuffer(value) ? value : Buffer.from(text(value));
    else headers[name] = text(value);
  }
  return { payload, headers };
}

function text(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}
