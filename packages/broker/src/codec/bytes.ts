import type { Codec } from './codec.js';

/** Raw bytes, passed through untouched. */
export const bytesCodec: Codec<Uint8Array> = {
  name: 'bytes',
  contentType: 'application/octet-stream',
  encode(value) {
    if (!(value instanceof Uint8Array)) throw new TypeError('bytes codec encodes Uint8Array (or Buffer) values');
    return value;
  },
  decode(bytes) {
    return bytes;
  },
};
