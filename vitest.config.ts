import { defineConfig } from 'vitest/config';

// Tests import workspace packages from their TypeScript sources (the
// "@ktransport/source" export condition), so a test run never sees a stale dist/.
export default defineConfig({
  resolve: { conditions: ['@ktransport/source'] },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
