import type { StandardSchemaV1 } from '@standard-schema/spec';
import { ValidationError } from './errors.js';

/**
 * Validates `value` with any Standard Schema (zod, valibot, arktype) and
 * resolves with the schema's output (defaults and transforms applied); a
 * violation rejects with a non-retriable ValidationError naming `subject` and
 * listing every issue. One rule for bodies, replies and replies received.
 */
export async function validated(schema: StandardSchemaV1, value: unknown, subject: string): Promise<unknown> {
  let result = schema['~standard'].validate(value);
  if (result instanceof Promise) result = await result;
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
