import { decode, encode } from '@msgpack/msgpack';
import type { Codec } from './codec.js';

/** MessagePack: compact binary JSON-like values. */
export const msgpackCodec: Codec<unknown> = {
  name: 'msgpack',
  contentType: 'application/msgpack',
  encode(value) {
    return encode(value);
  },
  decode(bytes) {
    return decode(bytes);
  },
};
