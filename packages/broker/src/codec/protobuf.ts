import type { Codec } from './codec.js';

/**
 * The part of a generated protobuf message type the codec needs; protobufjs
 * `Type` objects and protobufjs static code both fit.
 */
export interface ProtobufType<T> {
  /** Starts encoding a message; `finish()` returns its bytes. */
  encode(message: T): {
    /** The encoded bytes. */
    finish(): Uint8Array;
  };
  /** Reads a message from its bytes. */
  decode(bytes: Uint8Array): T;
  /** Fully qualified name, e.g. `.report.Event` (protobufjs) or `report.Event`. */
  readonly fullName?: string;
}

/** Options of `protobufCodec`. */
export interface ProtobufCodecOptions {
  /** Codec name for options; defaults to `protobuf:<message type>`. */
  name?: string;
  /** Message type name written to the content type; defaults to the type's fullName. */
  messageType?: string;
}

/**
 * A codec for one protobuf message type. The content type carries the message
 * type (`application/x-protobuf; messageType=report.Event`), so one registry can
 * hold several protobuf codecs and pick the right one on receive.
 */
export function protobufCodec<T>(type: ProtobufType<T>, options: ProtobufCodecOptions = {}): Codec<T> {
  const messageType = (options.messageType ?? type.fullName ?? '').replace(/^\./, '');
  if (!messageType) throw new TypeError('protobufCodec needs a message type name (options.messageType)');
  return {
    name: options.name ?? `protobuf:${messageType}`,
    contentType: `application/x-protobuf; messageType=${messageType}`,
    encode: (value) => type.encode(value).finish(),
    decode: (bytes) => type.decode(bytes),
  };
}
