import type { StandardSchemaV1 } from '@standard-schema/spec';
import { validated } from '../schema.js';
import type { Middleware } from './middleware.js';

/**
 * Validates the decoded body with any Standard Schema (zod, valibot, arktype) and
 * hands the schema's output (defaults and transforms applied) to the handler. A
 * violation fails with a non-retriable ValidationError listing every issue.
 */
export function validation(schema: StandardSchemaV1): Middleware {
  return (next) => async (message, context) => next({ ...message, body: await validated(schema, message.body, message.topic) }, context);
}
