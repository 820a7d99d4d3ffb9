import { DiagnosticSeverity, Parser } from '@asyncapi/parser';

/** Compared as numbers: the parser's diagnostics carry the enum of their own @stoplight/types copy. */
const ERROR = Number(DiagnosticSeverity.Error);

/**
 * The errors the official AsyncAPI parser finds in a document (an object or
 * its YAML), each as `code at path: message`; warnings and hints are left out.
 */
export async function parserErrors(document: object | string): Promise<string[]> {
  const input = typeof document === 'string' ? document : JSON.stringify(document);
  const { diagnostics, document: parsed } = await new Parser().parse(input);
  const errors = diagnostics.filter((d) => Number(d.severity) === ERROR).map((d) => `${String(d.code)} at ${d.path.join('/')}: ${d.message}`);
  if (!parsed && errors.length === 0) errors.push('the parser returned no document');
  return errors;
}
