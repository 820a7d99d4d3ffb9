import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AuthenticationError, CertificateError, ConnectionError } from '@ktransport/broker';
import type { AmqpBrokerOptions } from '@ktransport/transport-amqp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open, outcome, unique, waitFor } from './helpers.js';
import { answers, freePort, RabbitMq } from './rabbitmq.js';

const exec = promisify(execFile);

/** A CA, a server certificate for the name broker.test only, and a client certificate, made with openssl. */
interface Pki {
  readonly dir: string;
  readonly ca: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

async function makePki(): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), 'ktransport-amqp-pki-'));
  const p = (name: string): string => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await exec('openssl', ['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=ktransport amqp test CA']);
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
  await issue('server', '/CN=broker.test', 'subjectAltName=DNS:broker.test\nextendedKeyUsage=serverAuth');
  await issue('client', '/CN=ktransport-client', 'extendedKeyUsage=clientAuth');
  const read = (name: string): Promise<string> => readFile(p(name), 'utf8');
  return { dir, ca: await read('ca.crt'), clientCert: await read('client.crt'), clientKey: await read('client.key') };
}

let pki: Pki;
let rabbit: RabbitMq;
let tlsPort: number;

beforeAll(async () => {
  pki = await makePki();
  tlsPort = await freePort();
  // TLS with client certificates required, beside the plain listener; and a user of its own with a vhost.
  rabbit = await RabbitMq.start({
    config: () => [
      `listeners.ssl.default = 127.0.0.1:${tlsPort}`,
      `ssl_options.cacertfile = ${join(pki.dir, 'ca.crt')}`,
      `ssl_options.certfile = ${join(pki.dir, 'server.crt')}`,
      `ssl_options.keyfile = ${join(pki.dir, 'server.key')}`,
      'ssl_options.verify = verify_peer',
      'ssl_options.fail_if_no_peer_cert = true',
    ],
  });
  if (!(await answers(tlsPort, 30_000))) throw new Error(`the private RabbitMQ did not open its TLS listener on ${tlsPort}`);
  await rabbit.ctl('add_user', 'app', 'pa55:w/rd');
  await rabbit.ctl('add_vhost', 'orders');
  await rabbit.ctl('set_permissions', '-p', 'orders', 'app', '.*', '.*', '.*');
}, 120_000);

afterAll(async () => {
  await rabbit?.destroy();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
}, 60_000);

const tlsUrl = (): string => `amqps://guest:guest@127.0.0.1:${tlsPort}`;

/** Publishes one message and waits for it on a subscription of the same broker. */
async function roundTrip(options: AmqpBrokerOptions): Promise<void> {
  const broker = await open(options);
  const t = unique('secure');
  const got: number[] = [];
  await broker.subscribe<number>(t, (m) => void got.push(m.body));
  await broker.publish(t, 42);
  await waitFor(
    () => got.length === 1,
    5_000,
    () => 'nothing arrived',
  );
}

describe('TLS (amqps://) against a broker that requires client certificates', () => {
  it('connects with the CA, a client certificate and the server name, and carries messages', async () => {
    await roundTrip({ url: tlsUrl(), tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey, servername: 'broker.test' } });
  });

  it('an unknown CA fails connect() with a CertificateError (not retriable)', async () => {
    const error = await outcome(open({ url: tlsUrl(), tls: { cert: pki.clientCert, key: pki.clientKey, servername: 'broker.test' } }));
    expect((error as Error).cause).toBeInstanceOf(CertificateError);
    expect(((error as Error).cause as CertificateError).retriable).toBe(false);
  });

  it('a certificate for another name fails with a CertificateError; servername or rejectUnauthorized: false change that', async () => {
    // The URL's host is 127.0.0.1; the certificate names broker.test only.
    const error = await outcome(open({ url: tlsUrl(), tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } }));
    expect((error as Error).cause).toBeInstanceOf(CertificateError);
    await roundTrip({ url: tlsUrl(), tls: { cert: pki.clientCert, key: pki.clientKey, rejectUnauthorized: false } });
  });

  it('without a client certificate the broker refuses the connection: connect() rejects with a typed error', async () => {
    const error = await outcome(open({ url: tlsUrl(), connectTimeoutMs: 5_000, tls: { ca: pki.ca, servername: 'broker.test' } }));
    expect((error as Error).cause).toBeInstanceOf(ConnectionError);
  });
});

describe('credentials and vhost from the URL', () => {
  it('user and password (URL-encoded) and the vhost from the path', async () => {
    await roundTrip({ url: `amqp://app:${encodeURIComponent('pa55:w/rd')}@127.0.0.1:${rabbit.port}/orders` });
  });

  it('a wrong password is an AuthenticationError that does not show it; a vhost the user may not open too', async () => {
    const wrong = await outcome(open({ url: `amqp://app:wrong-secret@127.0.0.1:${rabbit.port}/orders` }));
    const cause = (wrong as Error).cause;
    expect(cause).toBeInstanceOf(AuthenticationError);
    expect(String(cause)).not.toMatch(/wrong-secret/);
    const vhost = await outcome(open({ url: `amqp://app:${encodeURIComponent('pa55:w/rd')}@127.0.0.1:${rabbit.port}/nope` }));
    expect((vhost as Error).cause).toBeInstanceOf(AuthenticationError);
    expect(String((vhost as Error).cause)).toMatch(/vhost/);
  });
});
