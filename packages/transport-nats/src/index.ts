/** The nats transport: under construction. */
export const PLACEHOLDER = true;
