import { ConfigurationError, type StandardSchemaV1 } from '@ktransport/broker';
import { safeId } from './ids.js';
import type { SchemaObject } from './types.js';

/** The Standard JSON Schema converter a schema may carry beside its validator (current zod 4 releases, valibot's `toStandardJsonSchema`). */
interface JsonSchemaConverter {
  readonly input: (options: { readonly target: string }) => Record<string, unknown>;
}

function converterOf(schema: StandardSchemaV1): JsonSchemaConverter | undefined {
  const props: unknown = schema['~standard'];
  if (typeof props !== 'object' || props === null || !('jsonSchema' in props)) return undefined;
  const converter: unknown = props.jsonSchema;
  if (typeof converter !== 'object' || converter === null || !('input' in converter) || typeof converter.input !== 'function') return undefined;
  return converter as JsonSchemaConverter;
}

/**
 * The draft-07 JSON Schema of what travels on the wire (the schema's input
 * type). Draft-07 because AsyncAPI's default schema format is a superset of it
 * and the official parser reads no later draft.
 */
export function jsonSchemaOf(schema: StandardSchemaV1, where: string): Record<string, unknown> {
  const converter = converterOf(schema);
  if (!converter) {
    throw new ConfigurationError(
      `${where}: the ${schema['~standard'].vendor} schema cannot give JSON Schema (no "~standard".jsonSchema); ` +
        'use a zod 4 release that has it, wrap a valibot schema with toStandardJsonSchema from @valibot/to-json-schema, or set untypedPayloads',
    );
  }
  try {
    return converter.input({ target: 'draft-07' });
  } catch (cause) {
    throw new ConfigurationError(`${where}: the schema cannot be written as JSON Schema: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/**
 * Splits a converted schema into `components.schemas` entries: the schema under
 * `name`, each of its root `definitions`/`$defs` under `name.def`, and every
 * local `$ref` rewritten to point there (inside an AsyncAPI document `#` is the
 * document, no longer the schema). The root `$schema` is dropped.
 */
export function toComponents(name: string, json: Record<string, unknown>): Record<string, SchemaObject> {
  const { $schema: _ignored, definitions, $defs, ...root } = json;
  const defs = { ...asRecord(definitions), ...asRecord($defs) };
  const defName = (def: string): string => `${name}.${safeId(def)}`;
  const rewrite = (ref: string): string => {
    const pointer = ref.slice(1);
    const match = /^\/(?:definitions|\$defs)\/([^/]+)(.*)$/.exec(pointer);
    if (match) return `#/components/schemas/${defName(unescape(match[1] ?? ''))}${match[2] ?? ''}`;
    return `#/components/schemas/${name}${pointer}`;
  };
  const components: Record<string, SchemaObject> = { [name]: relink(root, rewrite) as SchemaObject };
  for (const [def, schema] of Object.entries(defs)) components[defName(def)] = relink(schema, rewrite) as SchemaObject;
  return components;
}

function relink(value: unknown, rewrite: (ref: string) => string): unknown {
  if (Array.isArray(value)) return value.map((item) => relink(item, rewrite));
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, item]) => [
      key,
      key === '$ref' && typeof item === 'string' && item.startsWith('#') ? rewrite(item) : relink(item, rewrite),
    ]),
  );
}

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** JSON Pointer unescaping of one reference token. */
function unescape(token: string): string {
  return decodeURIComponent(token).replace(/~1/g, '/').replace(/~0/g, '~');
}
