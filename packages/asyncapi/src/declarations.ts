import { type CodecName, publicationsOf, type StandardSchemaV1, subscriptionsOf } from '@ktransport/broker';

/** What one decorated method says, whether it receives (`@Subscribe`) or sends (`@Publishes`). */
export interface Declared {
  /** `Class.method`, the wanted operation id. */
  readonly owner: string;
  readonly action: 'receive' | 'send';
  readonly topic: string;
  readonly schema?: StandardSchemaV1;
  /** The schema of the reply, when the method answers (`@Subscribe`) or sends (`@Publishes`) requests. */
  readonly replySchema?: StandardSchemaV1;
  readonly codec?: CodecName;
  readonly group?: string;
  readonly deadLetter?: string;
  readonly summary?: string;
  readonly description?: string;
}

type Constructor = abstract new (...args: never[]) => object;

/** The declarations of the given classes or instances; a class given twice is read once. */
export function declarationsOf(services: readonly object[]): Declared[] {
  const seen = new Set<object>();
  const found: Declared[] = [];
  for (const service of services) {
    const prototype = typeof service === 'function' ? ((service as Constructor).prototype as object) : (Object.getPrototypeOf(service) as object);
    if (seen.has(prototype)) continue;
    seen.add(prototype);
    found.push(...read(prototype));
  }
  return found;
}

function read(prototype: object): Declared[] {
  const probe = Object.create(prototype) as object;
  const className = classNameOf(prototype);
  const owner = (method: string | symbol): string => `${className}.${typeof method === 'symbol' ? (method.description ?? 'symbol') : method}`;
  const receives = subscriptionsOf(probe).map(({ topic, method, options }): Declared => ({
    owner: owner(method),
    action: 'receive',
    topic,
    ...defined({ schema: options.schema, replySchema: options.replySchema, codec: options.codec, group: options.group, deadLetter: options.deadLetter }),
  }));
  const sends = publicationsOf(probe).map(({ topic, method, options }): Declared => ({
    owner: owner(method),
    action: 'send',
    topic,
    ...defined({
      schema: options.schema,
      replySchema: options.replySchema,
      codec: options.codec,
      summary: options.summary,
      description: options.description,
    }),
  }));
  return [...receives, ...sends];
}

function classNameOf(prototype: object): string {
  const constructor: unknown = Object.getOwnPropertyDescriptor(prototype, 'constructor')?.value;
  return typeof constructor === 'function' && constructor.name !== '' ? constructor.name : 'Service';
}

/** The entries whose value is not undefined, so that optional fields stay absent. */
export function defined<T extends object>(fields: T): Partial<T> {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as Partial<T>;
}
