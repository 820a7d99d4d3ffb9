import { type CodecName, CodecRegistry, DEAD_LETTER_HEADER, type StandardSchemaV1 } from '@ktransport/broker';
import { addressOf } from './address.js';
import { type Declared, declarationsOf, defined } from './declarations.js';
import { Ids, safeId } from './ids.js';
import { jsonSchemaOf, toComponents } from './payload.js';
import { type ServerInput, serverOf } from './servers.js';
import type { AsyncApiChannel, AsyncApiDocument, AsyncApiInfo, AsyncApiMessage, AsyncApiOperation, Reference, SchemaObject } from './types.js';

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

/** What one operation carries: a body of some schema and content type, or a dead-letter copy. */
type Carried = { readonly kind: 'body'; readonly schema?: StandardSchemaV1; readonly contentType: string } | { readonly kind: 'dead-letter' };

interface Use {
  readonly id: string;
  readonly declared: Declared;
  readonly carried: Carried;
}

/**
 * Builds an AsyncAPI 3.0.0 document from the `@Subscribe` (receive) and
 * `@Publishes` (send) methods of `services`: one channel per topic, one message
 * per schema and content type on it, payloads as JSON Schema from the Standard
 * Schemas, a send operation per dead-letter topic. The same input gives the same
 * document, keys sorted, so a generated file can be compared byte for byte.
 * Throws a ConfigurationError for an unknown codec, a bad topic or server URL,
 * or a schema that cannot give JSON Schema (unless `untypedPayloads`).
 */
export function asyncApiDocument(options: AsyncApiOptions): AsyncApiDocument {
  const codecs = options.codecs ?? new CodecRegistry();
  const defaultCodec = options.defaultCodec ?? 'json';
  const uses = usesOf(declarationsOf(options.services), (codec) => codecs.get(codec ?? defaultCodec).contentType);
  const channelIds = channelIdsOf(uses);
  const schemas = new SchemaTable(options.untypedPayloads ?? false);
  const channels = new Map<string, ChannelBuild>();
  for (const [topic, channelId] of channelIds) channels.set(topic, new ChannelBuild(channelId, topic));
  const operations: [string, AsyncApiOperation][] = [];
  for (const use of [...uses].sort((a, b) => compare(a.id, b.id))) {
    const channel = channels.get(use.declared.topic);
    if (!channel) continue;
    const messageId = channel.message(use, schemas);
    operations.push([use.id, operationOf(use, channel.id, messageId)]);
  }
  const document: AsyncApiDocument = {
    asyncapi: '3.0.0',
    info: { title: options.info.title, version: options.info.version, ...defined({ description: options.info.description }) },
    defaultContentType: codecs.get(defaultCodec).contentType,
    ...serversOf(options.servers),
    channels: sorted([...channels.values()].map((channel) => [channel.id, channel.build()])),
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
    uses.push({ id, declared: d, carried: { kind: 'body', contentType: contentTypeOf(d.codec), ...defined({ schema: d.schema }) } });
    if (d.deadLetter !== undefined) {
      const deadLetter: Declared = { owner: `${d.owner}.deadLetter`, action: 'send', topic: d.deadLetter, summary: `Dead letters of ${id}` };
      uses.push({ id: ids.claim(deadLetter.owner), declared: deadLetter, carried: { kind: 'dead-letter' } });
    }
  }
  return uses;
}

/** Topic -> channel id, ids handed out in address order so that they do not depend on declaration order. */
function channelIdsOf(uses: readonly Use[]): Map<string, string> {
  const ids = new Ids();
  const topics = [...new Set(uses.map((use) => use.declared.topic))].sort(compare);
  return new Map(topics.map((topic) => [topic, ids.claim(addressOf(topic).address.replace(/[{}]/g, ''))]));
}

/** A channel being filled: its messages, one per schema object and content type. */
class ChannelBuild {
  readonly #ids = new Ids();
  readonly #messages: { readonly carried: Carried; readonly id: string; readonly message: AsyncApiMessage }[] = [];

  constructor(
    readonly id: string,
    readonly topic: string,
  ) {}

  /** The id of the message carrying `use`'s body, added on first sight. */
  message(use: Use, schemas: SchemaTable): string {
    const { carried } = use;
    const known = this.#messages.find((entry) => sameCarried(entry.carried, carried));
    if (known) return known.id;
    const id = this.#ids.claim(carried.kind === 'dead-letter' ? 'dead-letter' : this.id);
    const message = carried.kind === 'dead-letter' ? deadLetterMessage(id) : bodyMessage(id, carried, schemas, use);
    this.#messages.push({ carried, id, message });
    return id;
  }

  build(): AsyncApiChannel {
    const { address, parameters } = addressOf(this.topic);
    return {
      address,
      ...(Object.keys(parameters).length > 0 ? { parameters: sorted(Object.entries(parameters)) } : {}),
      messages: sorted(this.#messages.map(({ id, message }) => [id, message])),
    };
  }
}

function sameCarried(a: Carried, b: Carried): boolean {
  if (a.kind === 'dead-letter' || b.kind === 'dead-letter') return a.kind === b.kind;
  return a.schema === b.schema && a.contentType === b.contentType;
}

function bodyMessage(id: string, carried: Extract<Carried, { kind: 'body' }>, schemas: SchemaTable, use: Use): AsyncApiMessage {
  const payload = carried.schema ? schemas.payload(carried.schema, id, use.id) : undefined;
  return { name: id, contentType: carried.contentType, ...defined({ payload }) };
}

function deadLetterMessage(id: string): AsyncApiMessage {
  const properties = Object.fromEntries(Object.values(DEAD_LETTER_HEADER).map((header) => [header, { type: 'string' }]));
  return {
    name: id,
    summary: 'A message whose last attempt failed: the original payload, content type and headers, with headers naming the reason.',
    headers: { type: 'object', properties: sorted(Object.entries(properties)) },
  };
}

function operationOf(use: Use, channelId: string, messageId: string): AsyncApiOperation {
  const { declared } = use;
  return {
    action: declared.action,
    channel: ref(`#/channels/${channelId}`),
    messages: [ref(`#/channels/${channelId}/messages/${messageId}`)],
    ...defined({ summary: declared.summary, description: declared.description, 'x-ktransport-group': declared.group }),
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
