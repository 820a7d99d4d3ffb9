/**
 * Encoded bytes as the Node Buffer the client libraries take: the Buffer
 * itself when it is one (the built-in text codecs make Buffers), else a view of
 * the same memory, never a copy.
 */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
