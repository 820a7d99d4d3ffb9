/**
 * Turns bodies into the exact bytes that travel on the wire and back. The codec's
 * content type travels in the `content-type` header (MQTT 5: the contentType
 * property) and selects the decoder on receive.
 */
export interface Codec<T = unknown> {
  /** Name used in options (`codec: 'json'`). */
  readonly name: string;
  /** MIME type written to the `content-type` header. */
  readonly contentType: string;
  /** The bytes for a value; throws when the value cannot be encoded (publish then rejects with a PublishError). */
  encode(value: T): Uint8Array;
  /** The value for received bytes; throws when they cannot be read (the message fails with a DecodeError). */
  decode(bytes: Uint8Array): T;
}

/** The media type without parameters, lower-cased: `application/json; charset=utf-8` -> `application/json`. */
export function mediaType(contentType: string): string {
  return (contentType.split(';', 1)[0] ?? '').trim().toLowerCase();
}
