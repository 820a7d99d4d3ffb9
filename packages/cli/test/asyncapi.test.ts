import { beforeAll, describe, expect, it } from 'vitest';
// The asyncapi package's own check: the official AsyncAPI parser, which @ktransport/asyncapi's tests depend on.
import { parserErrors } from '../../asyncapi/test/validate.js';
import { assertBuilt, cli } from './helpers.js';

// `ktransport asyncapi` on a module of decorated services (test/fixtures/services.mjs), run as the binary.

const FIXTURE = 'packages/cli/test/fixtures/services.mjs'; // relative to the repository root, the child's cwd

beforeAll(() => assertBuilt());

describe('ktransport asyncapi', () => {
  it('prints an AsyncAPI 3.0 YAML document with the channels of the default export', async () => {
    const { code, stdout, stderr } = await cli([
      'asyncapi',
      FIXTURE,
      '--title',
      'Orders',
      '--version',
      '1.2.0',
      '--server',
      'prod=mqtts://user:s3cret@broker.example:8883',
    ]);
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/^asyncapi: 3\.0\.0\n/);
    expect(stdout).toMatch(/title: '?Orders'?\n/);
    expect(stdout).toContain('1.2.0');
    expect(stdout).toContain('orders/created');
    expect(stdout).toContain('orders/{level2}/paid');
    expect(stdout).toContain('orders/dead');
    expect(stdout).toContain('secure-mqtt');
    expect(stdout).not.toContain('s3cret');
    expect(await parserErrors(stdout)).toEqual([]); // valid YAML, and a valid AsyncAPI document
  });

  it('--json, --export of a function giving options: the module info is used', async () => {
    const { code, stdout, stderr } = await cli(['asyncapi', FIXTURE, '--export', 'document', '--json']);
    expect(code, stderr).toBe(0);
    const document = JSON.parse(stdout) as {
      asyncapi: string;
      info: { title: string; version: string };
      channels: Record<string, { address: string }>;
      operations: Record<string, { action: string }>;
    };
    expect(document.asyncapi).toBe('3.0.0');
    expect(document.info).toMatchObject({ title: 'From the module', version: '2.0.0' });
    expect(Object.values(document.channels).map((c) => c.address)).toEqual(expect.arrayContaining(['orders/{level2}/paid', 'orders/dead']));
    expect(Object.values(document.channels).map((c) => c.address)).not.toContain('orders/created');
    expect(Object.values(document.operations).map((o) => o.action)).toContain('receive');
  });

  it('a missing module exits 1, a missing export 2', async () => {
    const missing = await cli(['asyncapi', 'no/such/module.mjs']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('cannot import');
    const noExport = await cli(['asyncapi', FIXTURE, '--export', 'nothing']);
    expect(noExport.code).toBe(2);
    expect(noExport.stderr).toContain('has no export "nothing"');
  });
});
