import type { RawMessage } from '@ktransport/broker/transport';
import type { KafkaMessage } from 'kafkajs';
import { fromKafkaHeaders } from './headers.js';

/** The offset after `offset` (offsets are decimal strings; exact past 2^53 too). */
export function nextOffset(offset: string): string {
  return offset.length < 16 ? String(Number(offset) + 1) : (BigInt(offset) + 1n).toString();
}

/** A kafkajs record as the core pipeline's raw message: the value bytes exactly as they came. */
export function toRawMessage(topic: string, partition: number, message: KafkaMessage): RawMessage {
  const headers = fromKafkaHeaders(message.headers);
  const value = message.value;
  const raw: { -readonly [K in keyof RawMessage]: RawMessage[K] } = {
    topic,
    body: value ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength) : new Uint8Array(0),
    headers,
    partition,
    offset: message.offset,
    timestamp: Number(message.timestamp),
    raw: message,
  };
  if (message.key !== null && message.key !== undefined) raw.key = message.key.toString('utf8');
  const id = headers['message-id'];
  if (id !== undefined) raw.id = id;
  return raw;
}
