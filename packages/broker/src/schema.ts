import type { StandardSchemaV1 } from '@standard-schema/spec';
import { ValidationError } from './errors.js';

/**
 * Validates `value` with any Standard Schema (zod, valibot, arktype) and
 * returns the schema's output (defaults and transforms applied); a violation
 * throws a non-retriable ValidationError naming `subject` and listing every
 * issue. One rule for bodies, replies and replies received. A schema that
 * validates synchronously is answered synchronously (no promise, no tick: the
 * body validation of every delivery stays as cheap and as prompt as the
 * schema); an asynchronous one gives a promise.
 */
export function validated(schema: StandardSchemaV1, value: unknown, subject: string): unknown {
  const result = schema['~standard'].validate(value);
  if (result instanceof Promise) return result.then((settled) => outputOf(settled, subject));
  return outputOf(result, subject);
}

function outputOf(result: StandardSchemaV1.Result<unknown>, subject: string): unknown {
  if (!result.issues) return result.value;
  throw new ValidationError(
    subject,
    result.issues.map((issue) => ({ message: issue.message, path: issuePath(issue.path) })),
  );
}

function issuePath(path: StandardSchemaV1.Issue['path']): string {
  if (!path) return '';
  return path.map((segment) => String(typeof segment === 'object' ? segment.key : segment)).join('.');
}
