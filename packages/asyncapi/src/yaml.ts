import { stringify } from 'yaml';
import { type AsyncApiOptions, asyncApiDocument } from './document.js';
import type { AsyncApiDocument } from './types.js';

/** The document as YAML: keys in the document's order, no anchors or aliases, a final newline. */
export function toYaml(document: AsyncApiDocument): string {
  return stringify(document, { aliasDuplicateObjects: false, lineWidth: 0 });
}

/** `toYaml(asyncApiDocument(options))`: what a script writes to `asyncapi.yaml`. */
export function asyncApiYaml(options: AsyncApiOptions): string {
  return toYaml(asyncApiDocument(options));
}
