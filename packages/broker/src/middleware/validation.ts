import type { StandardSchemaV1 } from '@standard-schema/spec';
import { ValidationError } from '../errors.js';
import type { Middleware } from './middleware.js';

/**
 * Validates the decoded body with any Standard Schema (zod, valibot, arktype) and
 * hands the schema's output (defaults and transforms applied) to the handler. A
 * violation fails with a non-retriable ValidationError listing every issue.
 */
export function validation(schema: StandardSchemaV1): Middleware {
  return (next) => async (message, context) => {
    let result = schema['~standard'].validate(message.body);
    if (result instanceof Promise) result = await result;
    if (result.issues) {
      throw new ValidationError(
        message.topic,
        result.issues.map((issue) => ({ message: issue.message, path: formatPath(issue.path) })),
      );
    }
    return next({ ...message, body: result.value }, context);
  };
}

function formatPath(path: StandardSchemaV1.Issue['path']): string {
  if (!path) return '';
  return path.map((segment) => String(typeof segment === 'object' ? segment.key : segment)).join('.');
}
