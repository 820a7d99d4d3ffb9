import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parserErrors } from '../../../packages/asyncapi/test/validate.js';
import { ASYNCAPI_FILE, saverAsyncApi } from '../src/asyncapi.js';

const REGENERATE = 'examples/saver-service/asyncapi.yaml is stale: regenerate it with `npm run asyncapi` in examples/saver-service and commit it';

describe('the committed AsyncAPI document', () => {
  const generated = saverAsyncApi();

  it('is what the code declares today', () => {
    const committed = readFileSync(ASYNCAPI_FILE, 'utf8');
    expect(committed, REGENERATE).toBe(generated);
  });

  it('passes the official AsyncAPI parser without errors', async () => {
    expect(await parserErrors(generated)).toEqual([]);
  });

  it('lists what the agent sends and the saver receives', () => {
    for (const line of ['ReportRepository.postEvent:', 'ReportRepository.postUser:', 'SaverService.onEvent:', 'SaverService.onUser:', 'address: report/dead']) {
      expect(generated).toContain(line);
    }
  });
});
