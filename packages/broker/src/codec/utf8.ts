/**
 * UTF-8 bytes of a string. Node's Buffer.from places small strings in its
 * shared pool instead of allocating an ArrayBuffer per call (TextEncoder does),
 * which matters on the publish hot path. The Buffer is returned as it is (a
 * Buffer is a Uint8Array, as the Codec contract promises; mind byteOffset): the
 * transports hand it to their clients without wrapping it again.
 */
export function utf8(text: string): Uint8Array {
  return Buffer.from(text, 'utf8');
}
