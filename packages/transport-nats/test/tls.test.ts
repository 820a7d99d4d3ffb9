import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthenticationError, CertificateError, ConfigurationError, ConnectionError } from '@ktransport/broker';
import { waitFor } from '@ktransport/broker/testing';
import { NatsBroker, type NatsBrokerOptions } from '@ktransport/transport-nats';
import { fast, unique } from './helpers.js';
import { PrivateNats } from './servers.js';

const exec = promisify(execFile);
let dir = '';
let ca = '';
let clientCert = '';
let clientKey = '';
let tlsServer: PrivateNats;
let mutualServer: PrivateNats;

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
async function makePki(): Promise<void> {
  dir = await mkdtemp(join(tmpdir(), 'kt-nats-pki-'));
  const p = (name: string): string => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await exec('openssl', ['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=ktransport nats test CA']);
  const issue = async (name: string, subject: string, extensions: string): Promise<void> => {
    await writeFile(p(`${name}.ext`), `${extensions}\n`);
    await exec('openssl', ['req', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', subject]);
    await exec('openssl', [
      'x509',
      '-req',
      '-in',
      p(`${name}.csr`),
      '-CA',
      p('ca.crt'),
      '-CAkey',
      p('ca.key'),
      '-CAcreateserial',
      '-out',
      p(`${name}.crt`),
      '-days',
      '2',
      '-extfile',
      p(`${name}.ext`),
    ]);
  };
  await issue('server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth');
  await issue('client', '/CN=ktransport-client', 'extendedKeyUsage=clientAuth');
  ca = await readFile(p('ca.crt'), 'utf8');
  clientCert = await readFile(p('client.crt'), 'utf8');
  clientKey = await readFile(p('client.key'), 'utf8');
}

beforeAll(async () => {
  await makePki();
  const serverTls = ['--tls', '--tlscert', join(dir, 'server.crt'), '--tlskey', join(dir, 'server.key')];
  tlsServer = new PrivateNats({ args: serverTls });
  mutualServer = new PrivateNats({ args: [...serverTls, '--tlsverify', '--tlscacert', join(dir, 'ca.crt')] });
  await Promise.all([tlsServer.start(), mutualServer.start()]);
}, 60_000);

afterAll(async () => {
  await Promise.all([tlsServer?.remove(), mutualServer?.remove()]);
  if (dir) await rm(dir, { recursive: true, force: true });
}, 30_000);

/** Connects `options` with a stream of its own, and sends one message through it. */
async function roundTrip(options: NatsBrokerOptions): Promise<void> {
  const base = unique('tls');
  const broker = new NatsBroker({ ...fast, ...options, streams: [{ name: unique('S'), subjects: [base], storage: 'memory' }] });
  await broker.connect();
  try {
    const got: number[] = [];
    await broker.subscribe<{ n: number }>(base, (m) => void got.push(m.body.n));
    await broker.publish(base, { n: 1 });
    await waitFor(
      () => got.length === 1,
      10_000,
      () => 'nothing received',
    );
  } finally {
    await broker.disconnect();
  }
}

describe('NatsBroker over TLS', () => {
  it('tls:// with the CA of the server certificate connects and round-trips a message; so does nats:// with tls options', async () => {
    await roundTrip({ url: `tls://127.0.0.1:${tlsServer.port}`, tls: { ca } });
    await roundTrip({ url: `nats://127.0.0.1:${tlsServer.port}`, tls: { ca } });
  });

  it('a server certificate no trusted CA signed rejects connect() with a CertificateError (not retriable)', async () => {
    const error = await new NatsBroker({ ...fast, url: `tls://127.0.0.1:${tlsServer.port}` }).connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CertificateError);
    expect((error as CertificateError).retriable).toBe(false);
  });

  it('mutual TLS: the client certificate and key are presented; without them the server refuses the connection', async () => {
    await roundTrip({ url: `tls://127.0.0.1:${mutualServer.port}`, tls: { ca, cert: clientCert, key: clientKey } });
    const error = await new NatsBroker({ ...fast, connectTimeoutMs: 1_500, url: `tls://127.0.0.1:${mutualServer.port}`, tls: { ca } })
      .connect()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).not.toBeInstanceOf(AuthenticationError);
  });

  it('a plain nats:// URL to a TLS server without tls options is refused with a typed error, and tls:// to a plain server too', async () => {
    const plain = await new NatsBroker({ ...fast, url: `nats://127.0.0.1:${tlsServer.port}` }).connect().catch((e: unknown) => e);
    expect(plain).toBeInstanceOf(ConnectionError);
    const other = new PrivateNats();
    await other.start();
    try {
      const error = await new NatsBroker({ ...fast, url: `tls://127.0.0.1:${other.port}`, tls: { ca } }).connect().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectionError);
    } finally {
      await other.remove();
    }
    expect(() => new NatsBroker({ url: 'https://127.0.0.1:1' })).toThrow(ConfigurationError);
    expect(() => new NatsBroker({ url: 'tls://127.0.0.1:1,tls://127.0.0.2:1' })).toThrow(ConfigurationError);
  });
});
