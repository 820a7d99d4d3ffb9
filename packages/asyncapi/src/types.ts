/** A JSON Schema (draft-07) as AsyncAPI's default schema format reads it, or a `$ref` to one. */
export type SchemaObject = Record<string, unknown>;

/** A JSON Reference to another part of the document: `{ $ref: '#/channels/report-event' }`. */
export interface Reference {
  readonly $ref: string;
}

/** The `info` object: what the application is. */
export interface AsyncApiInfo {
  readonly title: string;
  readonly version: string;
  readonly description?: string;
}

/** A broker the application connects to, without credentials. */
export interface AsyncApiServer {
  /** Host and port as in the configured URL (Kafka: every bootstrap host, comma-separated). */
  readonly host: string;
  /** AsyncAPI protocol name: `mqtt`, `secure-mqtt`, `ws`, `wss`, `kafka`, `amqp`, `amqps`, `nats`, `redis`. */
  readonly protocol: string;
  /** The URL's path (AMQP virtual host, Redis database, WebSocket path), when it has one. */
  readonly pathname?: string;
  readonly description?: string;
}

/** A variable part of a channel address: one level (`+`) or the remaining levels (`#`) of a filter. */
export interface AsyncApiParameter {
  readonly description: string;
}

/** Where a value of a message is found, as a runtime expression: `$message.header#/correlation-id`. */
export interface AsyncApiLocation {
  readonly location: string;
  readonly description?: string;
}

/** A message a channel carries. */
export interface AsyncApiMessage {
  readonly name: string;
  /** The codec's content type; absent on dead-letter messages, which keep the original one. */
  readonly contentType?: string;
  /** The body's JSON Schema; absent when the declaration has no schema (any body). */
  readonly payload?: SchemaObject | Reference;
  /** Headers the message carries, as a JSON Schema of an object of strings. */
  readonly headers?: SchemaObject;
  /** On requests and replies: the `correlation-id` header that pairs them. */
  readonly correlationId?: AsyncApiLocation;
  readonly summary?: string;
  readonly description?: string;
}

/** A topic (`address`) and the messages seen on it. */
export interface AsyncApiChannel {
  /**
   * The ktransport topic, with `{parameters}` in place of the wildcards of a
   * filter; `null` on a reply channel, whose topic each request names in its
   * `reply-to` header.
   */
  readonly address: string | null;
  readonly description?: string;
  readonly parameters?: Readonly<Record<string, AsyncApiParameter>>;
  readonly messages: Readonly<Record<string, AsyncApiMessage>>;
}

/** The reply of a request–reply operation: where it goes and what it carries. */
export interface AsyncApiOperationReply {
  /** `$message.header#/reply-to`: the request names the reply topic. */
  readonly address: AsyncApiLocation;
  /** The reply channel (its address is `null`: dynamic). */
  readonly channel: Reference;
  readonly messages: readonly Reference[];
}

/** A `receive` (an `@Subscribe` method) or a `send` (an `@Publishes` method, a dead-letter copy). */
export interface AsyncApiOperation {
  readonly action: 'receive' | 'send';
  readonly channel: Reference;
  readonly messages: readonly Reference[];
  readonly summary?: string;
  readonly description?: string;
  /** The consumer group declared on `@Subscribe`, when there is one. */
  readonly 'x-ktransport-group'?: string;
  /** With a `replySchema`: the reply the responder sends, or the requester expects. */
  readonly reply?: AsyncApiOperationReply;
}

/** The AsyncAPI 3.0.0 document `asyncApiDocument` builds: plain data, keys in a stable order. */
export interface AsyncApiDocument {
  readonly asyncapi: '3.0.0';
  readonly info: AsyncApiInfo;
  readonly defaultContentType: string;
  readonly servers?: Readonly<Record<string, AsyncApiServer>>;
  readonly channels: Readonly<Record<string, AsyncApiChannel>>;
  readonly operations: Readonly<Record<string, AsyncApiOperation>>;
  readonly components?: { readonly schemas: Readonly<Record<string, SchemaObject>> };
}
