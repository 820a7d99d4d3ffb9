import type { Headers } from '@ktransport/broker';
import type { IHeaders } from 'kafkajs';

/**
 * Kafka record headers as message headers: byte values are read as UTF-8; when a
 * foreign producer repeated a header name, the last value wins.
 */
export function fromKafkaHeaders(headers: IHeaders | undefined): Headers {
  const out: Headers = {};
  if (!headers) return out;
  for (const name in headers) {
    const value = headers[name];
    const last = Array.isArray(value) ? value[value.length - 1] : value;
    if (last === undefined || last === null) continue;
    out[name] = typeof last === 'string' ? last : Buffer.isBuffer(last) ? last.toString('utf8') : Buffer.from(last).toString('utf8');
  }
  return out;
}

/** Bytes a message adds to a request: value, key and headers (a bound for batching, not exact). */
export function recordSize(value: Uint8Array, key: string | undefined, headers: Headers): number {
  let size = value.byteLength + 24;
  if (key !== undefined) size += Buffer.byteLength(key);
  // eslint-disable-next-line @typescript-eslint/no-non-null-assertion -- a key of its own for...in (Object.entries would allocate on every publish)
  for (const name in headers) size += Buffer.byteLength(name) + Buffer.byteLength(headers[name]!) + 4;
  return size;
}
