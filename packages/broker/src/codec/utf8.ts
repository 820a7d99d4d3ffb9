/**
 * UTF-8 bytes of a string as a plain Uint8Array. Node's Buffer.from places small
 * strings in its shared pool instead of allocating an ArrayBuffer per call
 * (TextEncoder does), which matters on the publish hot path; the result is a
 * view (mind byteOffset), typed as the Uint8Array the Codec contract promises.
 */
export function utf8(text: string): Uint8Array {
  const buffer = Buffer.from(text, 'utf8');
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}
