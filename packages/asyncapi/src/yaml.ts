import { stringify } from 'yaml';
import { type AsyncApiOptions, asyncApiDocument } from './document.js';
import type { AsyncApiDocument } from './types.js';

/** The document as YAML: keys in the document's order, no anchors or aliases, no line folding, single quotes (as Prettier writes YAML with `singleQuote`), a final newline. */
export function toYaml(document: AsyncApiDocument): string {
  return stringify(document, { aliasDuplicateObjects: false, lineWidth: 0, singleQuote: true });
}

/** `toYaml(asyncApiDocument(options))`: what a script writes to `asyncapi.yaml`. */
export function asyncApiYaml(options: AsyncApiOptions): string {
  return toYaml(asyncApiDocument(options));
}
