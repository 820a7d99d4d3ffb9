import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CertificateError, ConfigurationError } from '@ktransport/broker';
import { RedisBroker } from '@ktransport/transport-redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open, outcome, topic, waitFor } from './helpers.js';
import { PrivateRedis } from './redis.js';

const exec = promisify(execFile);

let dir: string;
let ca: string;
let redis: PrivateRedis;

/** A CA and a server certificate for the name redis.test only, made with openssl; a private redis-server listening with TLS. */
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ktransport-redis-pki-'));
  const p = (name: string): string => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await exec('openssl', ['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=ktransport test CA']);
  await exec('openssl', ['req', ...ec, '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=redis.test']);
  await exec('sh', ['-c', `printf 'subjectAltName=DNS:redis.test\\nextendedKeyUsage=serverAuth\\n' > ${p('server.ext')}`]);
  await exec('openssl', [
    'x509',
    '-req',
    '-in',
    p('server.csr'),
    '-CA',
    p('ca.crt'),
    '-CAkey',
    p('ca.key'),
    '-CAcreateserial',
    '-out',
    p('server.crt'),
    '-days',
    '2',
    '-extfile',
    p('server.ext'),
  ]);
  ca = await readFile(p('ca.crt'), 'utf8');
  redis = await PrivateRedis.start({ persistent: false, tls: { cert: p('server.crt'), key: p('server.key'), ca: p('ca.crt') } });
});
afterAll(async () => {
  await redis?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('TLS (rediss://)', () => {
  it('publishes and subscribes over TLS with the CA and server name given in tls', async () => {
    const broker = await open({ url: `rediss://127.0.0.1:${redis.port}`, tls: { ca, servername: 'redis.test' } });
    const t = topic('tls');
    const got: unknown[] = [];
    await broker.subscribe(t, (m) => void got.push(m.body), { group: 'g' });
    await broker.publish(t, { secure: true });
    await waitFor(
      () => got.length === 1,
      5_000,
      () => 'nothing received',
    );
    expect(got).toEqual([{ secure: true }]);
  });

  it('rejects a certificate that does not verify (the system CAs) with a CertificateError, at once', async () => {
    const broker = new RedisBroker({ url: `rediss://127.0.0.1:${redis.port}`, tls: { servername: 'redis.test' }, tracing: false, metrics: false });
    const begun = Date.now();
    const error = await outcome(broker.connect());
    expect(error).toBeInstanceOf(CertificateError);
    expect((error as CertificateError).retriable).toBe(false);
    expect(Date.now() - begun).toBeLessThan(2_000);
  });

  it('rejects a certificate for another name with a CertificateError', async () => {
    const broker = new RedisBroker({ url: `rediss://127.0.0.1:${redis.port}`, tls: { ca }, tracing: false, metrics: false });
    expect(await outcome(broker.connect())).toBeInstanceOf(CertificateError);
  });

  it('refuses the tls option with a redis:// url', () => {
    expect(() => new RedisBroker({ url: 'redis://127.0.0.1:6379', tls: { ca } })).toThrow(ConfigurationError);
  });
});
