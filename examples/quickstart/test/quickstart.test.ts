import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

describe('quickstart (the README flow)', () => {
  it('stores the valid reports, dead-letters the invalid one and loses nothing', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [MAIN], { timeout: 20_000 });
    expect(stdout).toMatch(/saver: dead-lettered: body of report\/event does not match the schema: event: /);
    expect(stdout.trim().split('\n').at(-1)).toBe('demo: posted=4 stored=3 dead-lettered=1 lost=0 transport=memory');
  });
});
