import type { Codec } from './codec.js';
import { utf8 } from './utf8.js';

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Plain UTF-8 text; invalid UTF-8 on receive is a decode error, not replacement characters. */
export const textCodec: Codec<string> = {
  name: 'text',
  contentType: 'text/plain; charset=utf-8',
  encode(value) {
    if (typeof value !== 'string') throw new TypeError(`text codec encodes strings, got ${typeof value}`);
    return utf8(value);
  },
  decode(bytes) {
    return decoder.decode(bytes);
  },
};
