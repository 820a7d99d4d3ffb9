import { type CodecName, CodecRegistry, DEAD_LETTER_HEADER, REPLY_ERROR_MAX_BYTES, REPLY_HEADER, type StandardSchemaV1 } from '@ktransport/broker';
import { addressOf } from './address.js';
import { type Declared, declarationsOf, defined } from './declarations.js';
import { Ids, safeId } from './ids.js';
import { jsonSchemaOf, toComponents } from './payload.js';
import { type ServerInput, serverOf } from './servers.js';
import type {
  AsyncApiChannel,
  AsyncApiDocument,
  AsyncApiInfo,
  AsyncApiLocation,
  AsyncApiMessage,
  AsyncApiOperation,
  AsyncApiOperationReply,
  Reference,
  SchemaObject,
} from './types.js';

/** What `asyncApiDocument` describes and how. */
export interface AsyncApiOptions {
  /** Title, version and description of the application. */
  readonly info: AsyncApiInfo;
  /** Classes or instances whose `@Subscribe` and `@Publishes` methods become operations. */
  readonly services: readonly object[];
  /** Brokers by server name: a URL (`mqtt://host:1883`) or `{ url, description }`. Credentials are never copied. */
  readonly servers?: Readonly<Record<string, ServerInput>>;
  /** Codecs whose content types the messages carry. Default: a registry with json, text, bytes and msgpack. */
  readonly codecs?: CodecRegistry;
  /** Codec of declarations that name none, as configured on the broker. Default `json`. */
  readonly defaultCodec?: CodecName;
  /** When true, a schema that cannot give JSON Schema becomes the untyped payload `{}` instead of a ConfigurationError. */
  readonly untypedPayloads?: boolean;
}

/**
 * What one operation carries: a body of some schema and content type (a request
 * when the operation has a reply), a reply, or a dead-letter copy.
 */
type Carried =
  | { readonly kind: 'body'; readonly schema?: StandardSchemaV1; readonly contentType: string; readonly request: boolean }
  | { readonly kind: 'reply'; readonly schema: StandardSchemaV1; readonly contentType: string }
  | { readonly kind: 'dead-letter' };

/** Where a request names its reply topic, and where requests and replies carry their correlation id. */
const REPLY_TO: AsyncApiLocation = { location: `$message.header#/${REPLY_HEADER.replyTo}` };
const CORRELATION_ID: AsyncApiLocation = { location: `$message.header#/${REPLY_HEADER.correlationId}` };

interface Use {
  readonly id: string;
  readonly declared: Declared;
  readonly carried: Carried;
  /** The reply of a declaration with a `replySchema`, in the content type of its codec. */
  readonly reply?: Extract<Carried, { kind: 'reply' }>;
}

/**
 * Builds an AsyncAPI 3.0.0 document from the `@Subscribe` (receive) and
 * `@Publishes` (send) methods of `services`: one channel per topic, one message
 * per schema and content type on it, payloads as JSON Schema from the Standard
 * Schemas, a send operation per dead-letter topic, and a `reply` (on a reply
 * channel whose address the request's `reply-to` header gives) for each
 * declaration with a `replySchema`. The same input gives the same
 * document, keys sorted, so a generated file can be compared byte for byte.
 * Throws a ConfigurationError for an unknown codec, a bad topic or server URL,
 * or a schema that cannot give JSON Schema (unless `untypedPayloads`).
 */
export function asyncApiDocument(options: AsyncApiOptions): AsyncApiDocument {
  const codecs = options.codecs ?? new CodecRegistry();
  const defaultCodec = options.defaultCodec ?? 'json';
  const uses = usesOf(declarationsOf(options.services), (codec) => codecs.get(codec ?? defaultCodec).contentType);
  const { channelIds, replyChannelIds } = channelIdsOf(uses);
  const schemas = new SchemaTable(options.untypedPayloads ?? false);
  const channels = new Map<string, ChannelBuild>();
  for (const [topic, channelId] of channelIds) channels.set(topic, new ChannelBuild(channelId, topic, false));
  const replyChannels = new Map<string, ChannelBuild>();
  for (const [topic, channelId] of replyChannelIds) replyChannels.set(topic, new ChannelBuild(channelId, topic, true));
  const operations: [string, AsyncApiOperation][] = [];
  for (const use of [...uses].sort((a, b) => compare(a.id, b.id))) {
    const channel = channels.get(use.declared.topic);
    if (!channel) continue;
    const messageId = channel.message(use.carried, use.id, schemas);
    const replyChannel = replyChannels.get(use.declared.topic);
    const reply = use.reply && replyChannel ? replyOf(replyChannel, replyChannel.message(use.reply, use.id, schemas)) : undefined;
    operations.push([use.id, operationOf(use, channel.id, messageId, reply)]);
  }
  const document: AsyncApiDocument = {
    asyncapi: '3.0.0',
    info: { title: options.info.title, version: options.info.version, ...defined({ description: options.info.description }) },
    defaultContentType: codecs.get(defaultCodec).contentType,
    ...serversOf(options.servers),
    channels: sorted([...channels.values(), ...replyChannels.values()].map((channel) => [channel.id, channel.build()])),
    operations: sorted(operations),
  };
  const components = schemas.build();
  return Object.keys(components).length > 0 ? { ...document, components: { schemas: components } } : document;
}

function usesOf(declared: readonly Declared[], contentTypeOf: (codec: CodecName | undefined) => string): Use[] {
  const ids = new Ids();
  const uses: Use[] = [];
  for (const d of declared) {
    const id = ids.claim(d.owner);
    const contentType = contentTypeOf(d.codec);
    const request = d.replySchema !== undefined;
    uses.push({
      id,
      declared: d,
      carried: { kind: 'body', contentType, request, ...defined({ schema: d.schema }) },
      ...(d.replySchema === undefined ? {} : { reply: { kind: 'reply', schema: d.replySchema, contentType } }),
    });
    if (d.deadLetter !== undefined) {
      const deadLetter: Declared = { owner: `${d.owner}.deadLetter`, action: 'send', topic: d.deadLetter, summary: `Dead letters of ${id}` };
      uses.push({ id: ids.claim(deadLetter.owner), declared: deadLetter, carried: { kind: 'dead-letter' } });
    }
  }
  return uses;
}

/**
 * Topic -> channel id, and topic -> id of its reply channel for the topics that
 * carry requests (`{channel id}-reply`), ids handed out in address order so that
 * they do not depend on declaration order.
 */
function channelIdsOf(uses: readonly Use[]): { channelIds: Map<string, string>; replyChannelIds: Map<string, string> } {
  const ids = new Ids();
  const topics = [...new Set(uses.map((use) => use.declared.topic))].sort(compare);
  const channelIds = new Map(topics.map((topic) => [topic, ids.claim(addressOf(topic).address.replace(/[{}]/g, ''))]));
  const requested = new Set(uses.filter((use) => use.reply).map((use) => use.declared.topic));
  const replyChannelIds = new Map(topics.filter((topic) => requested.has(topic)).map((topic) => [topic, ids.claim(`${channelIds.get(topic) ?? ''}-reply`)]));
  return { channelIds, replyChannelIds };
}

/**
 * A channel being filled: its messages, one per schema object and content type.
 * A reply channel (`reply`) has the address `null`: each request names its
 * reply topic in `reply-to`.
 */
class ChannelBuild {
  readonly #ids = new Ids();
  readonly #messages: { readonly carried: Carried; readonly id: string; readonly message: AsyncApiMessage }[] = [];

  constructor(
    readonly id: string,
    readonly topic: string,
    readonly reply: boolean,
  ) {}

  /** The id of the message that carries `carried` for the operation `where`, added on first sight. */
  message(carried: Carried, where: string, schemas: SchemaTable): string {
    const known = this.#messages.find((entry) => sameCarried(entry.carried, carried));
    if (known) return known.id;
    const id = this.#ids.claim(carried.kind === 'dead-letter' ? 'dead-letter' : this.id);
    const message =
      carried.kind === 'dead-letter'
        ? deadLetterMessage(id)
        : carried.kind === 'reply'
          ? replyMessage(id, carried, schemas, where)
          : bodyMessage(id, carried, schemas, where);
    this.#messages.push({ carried, id, message });
    return id;
  }

  build(): AsyncApiChannel {
    const { address, parameters } = addressOf(this.topic);
    const messages = sorted(this.#messages.map(({ id, message }) => [id, message]));
    if (this.reply) {
      return {
        address: null,
        description: `Replies to the requests sent to \`${address}\`: each goes to the topic its request names in the \`${REPLY_HEADER.replyTo}\` header.`,
        messages,
      };
    }
    return { address, ...(Object.keys(parameters).length > 0 ? { parameters: sorted(Object.entries(parameters)) } : {}), messages };
  }
}

function sameCarried(a: Carried, b: Carried): boolean {
  if (a.kind === 'dead-letter' || b.kind === 'dead-letter') return a.kind === b.kind;
  if (a.kind === 'body' && b.kind === 'body' && a.request !== b.request) return false;
  return a.kind === b.kind && a.schema === b.schema && a.contentType === b.contentType;
}

function bodyMessage(id: string, carried: Extract<Carried, { kind: 'body' }>, schemas: SchemaTable, where: string): AsyncApiMessage {
  const payload = carried.schema ? schemas.payload(carried.schema, id, where) : undefined;
  if (!carried.request) return { name: id, contentType: carried.contentType, ...defined({ payload }) };
  return {
    name: id,
    contentType: carried.contentType,
    ...defined({ payload }),
    headers: headersSchema({
      [REPLY_HEADER.replyTo]: 'The topic the reply goes to; without it the message is not a request and gets no reply.',
      [REPLY_HEADER.correlationId]: 'Pairs the reply with its request (the requester gives each request a random UUID).',
    }),
    correlationId: CORRELATION_ID,
  };
}

function replyMessage(id: string, carried: Extract<Carried, { kind: 'reply' }>, schemas: SchemaTable, where: string): AsyncApiMessage {
  return {
    name: id,
    summary: 'The reply to a request, sent to the topic its `reply-to` header names.',
    description:
      'When the responder fails instead (its handler throws, the request does not decode or validate, or the reply does not match its ' +
      'schema), it sends an error reply: an empty body with the `x-reply-error-type` and `x-reply-error` headers, which the requester ' +
      'turns into a `RemoteError`.',
    contentType: carried.contentType,
    payload: schemas.payload(carried.schema, id, where),
    headers: headersSchema({
      [REPLY_HEADER.correlationId]: 'The `correlation-id` of the request.',
      [REPLY_HEADER.errorType]: 'Error replies only: the type of the responder’s error (`VALIDATION_ERROR`, `DECODE_ERROR`, `TypeError`, ...).',
      [REPLY_HEADER.error]: `Error replies only: the responder’s error message, escaped, at most ${REPLY_ERROR_MAX_BYTES} bytes, never a stack.`,
    }),
    correlationId: CORRELATION_ID,
  };
}

function replyOf(channel: ChannelBuild, messageId: string): AsyncApiOperationReply {
  return {
    address: REPLY_TO,
    channel: ref(`#/channels/${channel.id}`),
    messages: [ref(`#/channels/${channel.id}/messages/${messageId}`)],
  };
}

/** The JSON Schema of headers: an object of strings, each described. */
function headersSchema(described: Record<string, string>): SchemaObject {
  return { type: 'object', properties: sorted(Object.entries(described).map(([name, description]) => [name, { type: 'string', description }])) };
}

function deadLetterMessage(id: string): AsyncApiMessage {
  const properties = Object.fromEntries(Object.values(DEAD_LETTER_HEADER).map((header) => [header, { type: 'string' }]));
  return {
    name: id,
    summary: 'A message whose last attempt failed: the original payload, content type and headers, with headers naming the reason.',
    headers: { type: 'object', properties: sorted(Object.entries(properties)) },
  };
}

function operationOf(use: Use, channelId: string, messageId: string, reply: AsyncApiOperationReply | undefined): AsyncApiOperation {
  const { declared } = use;
  return {
    action: declared.action,
    channel: ref(`#/channels/${channelId}`),
    messages: [ref(`#/channels/${channelId}/messages/${messageId}`)],
    ...defined({ summary: declared.summary, description: declared.description, 'x-ktransport-group': declared.group, reply }),
  };
}

/** Payload schemas, one component per schema object, named after the first message that carries it. */
class SchemaTable {
  readonly #names = new Map<StandardSchemaV1, string>();
  readonly #ids = new Ids();
  readonly #components: Record<string, SchemaObject> = {};

  constructor(private readonly untyped: boolean) {}

  payload(schema: StandardSchemaV1, wanted: string, where: string): SchemaObject | Reference {
    const known = this.#names.get(schema);
    if (known) return ref(`#/components/schemas/${known}`);
    let json: Record<string, unknown>;
    try {
      json = jsonSchemaOf(schema, where);
    } catch (error) {
      if (this.untyped) return {};
      throw error;
    }
    const name = this.#ids.claim(wanted);
    for (const [key, component] of Object.entries(toComponents(name, json))) this.#components[key] = component;
    this.#names.set(schema, name);
    return ref(`#/components/schemas/${name}`);
  }

  build(): Record<string, SchemaObject> {
    return sorted(Object.entries(this.#components));
  }
}

function serversOf(servers: Readonly<Record<string, ServerInput>> | undefined): Pick<AsyncApiDocument, 'servers'> {
  if (!servers || Object.keys(servers).length === 0) return {};
  return { servers: sorted(Object.entries(servers).map(([name, input]) => [safeId(name), serverOf(name, input)])) };
}

function ref($ref: string): Reference {
  return { $ref };
}

function sorted<T>(entries: Iterable<readonly [string, T]>): Record<string, T> {
  return Object.fromEntries([...entries].sort(([a], [b]) => compare(a, b)));
}

/** Code-point order, the same in every locale. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
