/** The amqp transport: under construction. */
export const PLACEHOLDER = true;
