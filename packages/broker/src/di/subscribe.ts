import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { Broker, HandlerContext, SubscribeOptions } from '../broker.js';
import type { Message } from '../message.js';

/** Inversify token for the broker: `@inject(BROKER) private readonly broker: Broker`. */
export const BROKER: symbol & { readonly __type?: Broker } = Symbol.for('@ktransport/broker:Broker');

/** One `@Subscribe` declaration found on a service. */
export interface SubscribeDeclaration {
  readonly topic: string;
  readonly options: SubscribeOptions;
  readonly method: string | symbol;
}

/** A method `@Subscribe` accepts: what it returns is the reply when the message is a request. */
type HandlerMethod<T> = (message: Message<T>, context: HandlerContext) => unknown;

/** A method `@Subscribe` accepts with a `replySchema`: it returns (or resolves with) the schema's input, or nothing (no reply). */
type ReplyingMethod<T, R> = (message: Message<T>, context: HandlerContext) => R | void | Promise<R | void>;

const declarations = new WeakMap<object, SubscribeDeclaration[]>();

/**
 * Marks a method of an `@injectable()` service as the handler of `topic`. With a
 * `schema`, the method's message body is typed as the schema's output and only
 * valid bodies reach it. Options of the transport (MQTT `qos`, Kafka
 * `fromBeginning`) ride along to the broker's `subscribe`; they are typed once
 * the transport package is imported, and a misspelt option is a compile error.
 * With a `replySchema`, the method's return type must be the reply schema's
 * input (or a promise of it, or nothing), and the reply is validated before it
 * is sent.
 */
export function Subscribe<S extends StandardSchemaV1, R extends StandardSchemaV1>(
  topic: string,
  options: SubscribeOptions<S> & { schema: S; replySchema: R },
): <M extends ReplyingMethod<StandardSchemaV1.InferOutput<S>, StandardSchemaV1.InferInput<R>>>(
  target: object,
  method: string | symbol,
  descriptor: TypedPropertyDescriptor<M>,
) => void;
export function Subscribe<R extends StandardSchemaV1>(
  topic: string,
  options: SubscribeOptions & { replySchema: R },
): <M extends ReplyingMethod<never, StandardSchemaV1.InferInput<R>>>(target: object, method: string | symbol, descriptor: TypedPropertyDescriptor<M>) => void;
export function Subscribe<S extends StandardSchemaV1>(
  topic: string,
  options: SubscribeOptions<S> & { schema: S },
): <M extends HandlerMethod<StandardSchemaV1.InferOutput<S>>>(target: object, method: string | symbol, descriptor: TypedPropertyDescriptor<M>) => void;
export function Subscribe(
  topic: string,
  options?: SubscribeOptions,
): <M extends HandlerMethod<never>>(target: object, method: string | symbol, descriptor: TypedPropertyDescriptor<M>) => void;
export function Subscribe(topic: string, options: SubscribeOptions = {}) {
  return (target: object, method: string | symbol): void => {
    const list = declarations.get(target) ?? [];
    list.push({ topic, options, method });
    declarations.set(target, list);
  };
}

/** The `@Subscribe` declarations of an instance, its class and the classes it extends. */
export function subscriptionsOf(instance: object): SubscribeDeclaration[] {
  const found: SubscribeDeclaration[] = [];
  for (let proto = Object.getPrototypeOf(instance) as object | null; proto; proto = Object.getPrototypeOf(proto) as object | null) {
    found.push(...(declarations.get(proto) ?? []));
  }
  return found;
}
