import type { Headers } from '@ktransport/broker';
import type { IHeaders } from 'kafkajs';

/** Message headers as Kafka record headers (UTF-8 string values). */
export function toKafkaHeaders(headers: Headers): IHeaders {
  const out: IHeaders = {};
  for (const [name, value] of Object.entries(headers)) out[name] = value;
  return out;
}

/**
 * Kafka record headers as message headers: byte values are read as UTF-8; when a
 * foreign producer repeated a header name, the last value wins.
 */
export function fromKafkaHeaders(headers: IHeaders | undefined): Headers {
  const out: Headers = {};
  if (!headers) return out;
  for (const [name, value] of Object.entries(headers)) {
    const last = Array.isArray(value) ? value[value.length - 1] : value;
    if (last === undefined || last === null) continue;
    out[name] = typeof last === 'string' ? last : Buffer.from(last).toString('utf8');
  }
  return out;
}

/** Bytes a message adds to a request: value, key and headers (a bound for batching, not exact). */
export function recordSize(value: Uint8Array, key: string | undefined, headers: Headers): number {
  let size = value.byteLength + 24;
  if (key !== undefined) size += Buffer.byteLength(key);
  for (const [name, v] of Object.entries(headers)) size += Buffer.byteLength(name) + Buffer.byteLength(v) + 4;
  return size;
}
