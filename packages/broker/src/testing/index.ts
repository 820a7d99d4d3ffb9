export { type BrokerFeatures, type ConformanceCase, conformanceCases, type ConformanceOptions } from './conformance.js';
export { publishEventually, sleep, waitFor } from './wait.js';
export { type CodePointRange, type Fuzz, fuzz, fuzzSeed, PRINTABLE_RANGES } from './fuzz.js';
export { freePort, portAnswers } from './ports.js';
export { assertReplyTrace, type FinishedSpan, type ReplyTrace, type ReplyTraceNames } from './trace.js';
