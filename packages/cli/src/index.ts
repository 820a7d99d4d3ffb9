/**
 * The `ktransport` command line as a function: `run(argv, io)` runs one
 * command in the calling process, as the `ktransport` binary does.
 *
 * @packageDocumentation
 */
export { run, HELP } from './run.js';
export { EXIT, type RunIo, type TextSink } from './io.js';
