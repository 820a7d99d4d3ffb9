import type { Codec } from './codec.js';
import { utf8 } from './utf8.js';

const decoder = new TextDecoder('utf-8', { fatal: true });

/** JSON in UTF-8, the default codec. */
export const jsonCodec: Codec<unknown> = {
  name: 'json',
  contentType: 'application/json',
  encode(value) {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`cannot encode ${typeof value} as JSON`);
    return utf8(text);
  },
  decode(bytes) {
    return JSON.parse(decoder.decode(bytes)) as unknown;
  },
};
