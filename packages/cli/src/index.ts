/** The ktransport command line: under construction. */
export const PLACEHOLDER = true;
