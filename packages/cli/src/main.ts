#!/usr/bin/env node
// The `ktransport` binary: `run` with the process's streams, environment and signals.
import { run } from './index.js';

const controller = new AbortController();
let signals = 0;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    // The first signal drains (tail) or stops repeating (publish); a second one ends at once.
    if (++signals > 1) process.exit(130);
    controller.abort();
  });
}

// A closed pipe (`ktransport tail ... | head -1`) ends the command as a signal would.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
  controller.abort();
});

const status = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  cwd: process.cwd(),
  signal: controller.signal,
});
// Some clients keep timers or sockets a little after closing: the status is known, so end now.
process.exitCode = status;
process.stdout.write('', () => process.exit(status));
