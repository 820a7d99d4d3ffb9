import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

type Exports = Record<string, { '@ktransport/source'?: string }>;

/**
 * Tests import workspace packages by name but run their TypeScript sources (the
 * "@ktransport/source" entry of each export), so a test never sees a stale dist/.
 */
function sourceAliases(): { find: string; replacement: string }[] {
  const aliases: { find: string; replacement: string }[] = [];
  for (const dir of readdirSync('packages')) {
    const manifest = join('packages', dir, 'package.json');
    if (!existsSync(manifest)) continue;
    const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { name: string; exports?: Exports };
    for (const [subpath, entry] of Object.entries(pkg.exports ?? {})) {
      const source = entry['@ktransport/source'];
      if (source) aliases.push({ find: join(pkg.name, subpath), replacement: resolve('packages', dir, source) });
    }
  }
  // Longest first, so "@ktransport/broker/testing" wins over "@ktransport/broker".
  return aliases.sort((a, b) => b.find.length - a.find.length);
}

/**
 * Tests that need no broker, database or network peer beyond loopback servers
 * they start themselves: `npm run test:unit` runs these alone, under a minute.
 */
const UNIT = [
  'packages/broker/test/**/*.test.ts',
  'packages/transport-grpc/test/**/*.test.ts',
  'examples/quickstart/test/**/*.test.ts',
  'examples/saver-service/test/config.test.ts',
  'packages/asyncapi/test/**/*.test.ts',
  'examples/saver-service/test/asyncapi.test.ts',
];

export default defineConfig({
  resolve: { alias: sourceAliases() },
  test: {
    testTimeout: 30_000,
    hookTimeout: 120_000,
    projects: [
      { extends: true, test: { name: 'unit', include: UNIT } },
      {
        extends: true,
        test: { name: 'integration', include: ['packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts'], exclude: UNIT },
      },
    ],
  },
});
