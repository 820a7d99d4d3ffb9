#!/usr/bin/env node
// The `ktransport` binary. It lives outside dist/ so that pnpm links it at install time,
// before the build: pnpm creates no bin link for a file that does not exist yet.
import process from 'node:process';

try {
  await import('../dist/main.js');
} catch (error) {
  if (error?.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/main.js')) {
    process.stderr.write('ktransport: @ktransport/cli is not built; run "npm run build" in the repository first\n');
    process.exit(1);
  }
  throw error;
}
