import { ConfigurationError, DecodeError } from '../errors.js';
import { headerText } from '../text.js';
import { bytesCodec } from './bytes.js';
import type { Codec } from './codec.js';
import { mediaType } from './codec.js';
import { jsonCodec } from './json.js';
import { msgpackCodec } from './msgpack.js';
import { textCodec } from './text.js';

/**
 * A set of codecs found by name (publish and subscribe options) or by content
 * type (receive). An instance, not a global: two brokers never share hidden state.
 */
export class CodecRegistry {
  readonly #byName = new Map<string, Codec>();
  readonly #byContentType = new Map<string, Codec>();
  readonly #byMediaType = new Map<string, Codec>();
  /** Content types as received -> codec, so that a header is parsed once, not per message. */
  readonly #resolved = new Map<string, Codec>();

  constructor(codecs: Iterable<Codec<unknown>> = defaultCodecs()) {
    for (const codec of codecs) this.register(codec);
  }

  /** Adds a codec; a second codec with the same name is a configuration error. */
  register<T>(codec: Codec<T>): this {
    const c = codec as unknown as Codec;
    if (this.#byName.has(c.name)) throw new ConfigurationError(`codec "${c.name}" is already registered`);
    this.#byName.set(c.name, c);
    this.#byContentType.set(normalize(c.contentType), c);
    const media = mediaType(c.contentType);
    if (!this.#byMediaType.has(media)) this.#byMediaType.set(media, c);
    this.#resolved.clear();
    return this;
  }

  /** The codec with this name; an unknown name is a configuration error, never a fallback. */
  get(name: string): Codec {
    const codec = this.#byName.get(name);
    if (!codec) {
      throw new ConfigurationError(`unknown codec "${name}"; registered: ${[...this.#byName.keys()].join(', ')}`);
    }
    return codec;
  }

  /** Whether a codec with this name is registered. */
  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /**
   * The codec for a received content type: an exact match first (parameters
   * included, so protobuf message types stay apart), then the bare media type.
   */
  forContentType(contentType: string): Codec {
    const known = this.#resolved.get(contentType);
    if (known) return known;
    const codec = this.#byContentType.get(normalize(contentType)) ?? this.#byMediaType.get(mediaType(contentType));
    if (!codec) throw new DecodeError(`no codec registered for content type "${headerText(contentType, 100)}"`);
    // Bounded: foreign publishers could send any number of distinct values.
    if (this.#resolved.size >= 256) this.#resolved.clear();
    this.#resolved.set(contentType, codec);
    return codec;
  }
}

/** The codecs every registry starts with: json, text, bytes and msgpack. */
export function defaultCodecs(): Codec<unknown>[] {
  return [jsonCodec, textCodec, bytesCodec, msgpackCodec] as Codec<unknown>[];
}

function normalize(contentType: string): string {
  return contentType
    .split(';')
    .map((part) => part.trim().toLowerCase())
    .filter(Boolean)
    .join(';');
}
