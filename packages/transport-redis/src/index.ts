/** The redis transport: under construction. */
export const PLACEHOLDER = true;
