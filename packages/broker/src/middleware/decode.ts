import type { CodecRegistry } from '../codec/registry.js';
import { BrokerError, DecodeError } from '../errors.js';
import { HEADER } from '../message.js';
import { errorText, headerText } from '../text.js';
import type { Middleware } from './middleware.js';

/**
 * Decodes the received bytes with the codec named by the `content-type` header,
 * or with `fallback` when the message has none (a foreign publisher, MQTT 3.1.1).
 * A subscription whose codec is `bytes` gets the raw bytes whatever the header
 * says (a dead-letter reader, a proxy). A payload the codec cannot read fails
 * with a non-retriable DecodeError whose message is bounded and escaped.
 */
export function decode(codecs: CodecRegistry, fallback: string): Middleware {
  const fallbackCodec = codecs.get(fallback);
  if (fallback === 'bytes') return (next) => (message, context) => next({ ...message, body: context.payload }, context);
  return (next) => (message, context) => {
    let body: unknown;
    const contentType = message.headers[HEADER.contentType];
    try {
      const codec = contentType ? codecs.forContentType(contentType) : fallbackCodec;
      body = codec.decode(context.payload);
    } catch (error) {
      if (error instanceof BrokerError) throw error;
      // The codec's message may quote the payload: it is escaped and bounded, never raw foreign bytes.
      const as = contentType === undefined ? fallback : `"${headerText(contentType, 100)}"`;
      throw new DecodeError(
        `cannot decode ${context.payload.byteLength}-byte payload on ${headerText(message.topic, 200)} as ${as}: ${errorText(error, 300)}`,
        { cause: error },
      );
    }
    return next({ ...message, body }, context);
  };
}
