import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { CodecName } from '../broker.js';

/** Options of `@Publishes`: what the method sends, for documents such as AsyncAPI. */
export interface PublishesOptions {
  /** Standard Schema of the published body (zod, valibot, arktype); documents it, validates nothing. */
  schema?: StandardSchemaV1;
  /**
   * Standard Schema of the reply: declares that the method sends requests to the
   * topic (`Requester.request`) and expects replies of this schema. Documents it,
   * validates nothing (pass the schema to `request` as its `schema` for that).
   */
  replySchema?: StandardSchemaV1;
  /** Codec the method publishes with; default: the broker's default codec (json). */
  codec?: CodecName;
  /** One line saying what the publication is. */
  summary?: string;
  /** A longer explanation (CommonMark). */
  description?: string;
}

/** One `@Publishes` declaration found on a class. */
export interface PublishesDeclaration {
  readonly topic: string;
  readonly options: PublishesOptions;
  readonly method: string | symbol;
}

const declarations = new WeakMap<object, PublishesDeclaration[]>();

/**
 * Declares that a method publishes to `topic` (a repository's `post`, say), so
 * that tools such as `@ktransport/asyncapi` can list what a service sends. It is
 * metadata only: the method runs exactly as written and nothing is validated,
 * `schema` and `replySchema` included (a `replySchema` says the method sends
 * requests and what their replies are). A method that publishes to several
 * topics carries one `@Publishes` per topic.
 */
export function Publishes(topic: string, options: PublishesOptions = {}): (target: object, method: string | symbol) => void {
  return (target: object, method: string | symbol): void => {
    const list = declarations.get(target) ?? [];
    list.push({ topic, options, method });
    declarations.set(target, list);
  };
}

/** The `@Publishes` declarations of an instance, its class and the classes it extends. */
export function publicationsOf(instance: object): PublishesDeclaration[] {
  const found: PublishesDeclaration[] = [];
  for (let proto = Object.getPrototypeOf(instance) as object | null; proto; proto = Object.getPrototypeOf(proto) as object | null) {
    found.push(...(declarations.get(proto) ?? []));
  }
  return found;
}
