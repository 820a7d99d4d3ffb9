import type { StandardSchemaV1 } from '@standard-schema/spec';
import { validated } from '../schema.js';
import type { Middleware } from './middleware.js';

/**
 * Validates the decoded body with any Standard Schema (zod, valibot, arktype) and
 * hands the schema's output (defaults and transforms applied) to the handler. A
 * violation fails with a non-retriable ValidationError listing every issue.
 */
export function validation(schema: StandardSchemaV1): Middleware {
  return (next) => async (message, context) => {
    // A synchronous schema hands over at once, in the same tick (an await here would delay every delivery).
    const body = validated(schema, message.body, message.topic);
    return next({ ...message, body: body instanceof Promise ? await body : body }, context);
  };
}
