/** AsyncAPI 3 documents from ktransport declarations: under construction. */
export const PLACEHOLDER = true;
