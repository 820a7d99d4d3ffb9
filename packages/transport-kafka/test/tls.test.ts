import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server, type TlsOptions } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthenticationError, BrokerError, CertificateError, ConnectionError } from '@ktransport/broker';
import { KafkaBroker, type KafkaBrokerOptions, type KafkaLogEntry } from '@ktransport/transport-kafka';
import { defined, ensureKafka, KAFKA, KAFKA_SASL } from './helpers.js';

/*
 * scripts/kafka.sh has no TLS listener. Certificate verification is the client's
 * own check (Node's TLS under kafkajs), made during the handshake before any
 * Kafka request: a TLS server made with node:tls on loopback that presents the
 * certificates below provokes every failure, and a handshake that passes shows
 * that only verification failures are classified as CertificateError.
 */

let dir: string;
/** PEM files by name: ca (the CA the client may trust), server (signed by ca, for host kafka.example only), self (self-signed). */
const pem: Record<string, string> = {};
const file = (name: string): string => defined(pem[name], name);
const servers: Server[] = [];

function openssl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd: dir }, (error, _stdout, stderr) => (error ? reject(new Error(`openssl ${args.join(' ')}: ${stderr}`)) : resolve()));
  });
}

/** A self-signed CA certificate and its key. */
async function makeCa(name: string): Promise<void> {
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.crt`]);
}

/** A certificate signed by `ca`, with the extensions in `{name}.ext`. */
async function makeSigned(name: string, ca: string, cn: string): Promise<void> {
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.csr`]);
  await openssl([
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.crt`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    `${name}.crt`,
    '-extfile',
    `${name}.ext`,
  ]);
}

beforeAll(async () => {
  await ensureKafka();
  dir = await mkdtemp(join(tmpdir(), 'kt-tls-'));
  await makeCa('ca');
  await writeFile(join(dir, 'server.ext'), 'subjectAltName=DNS:kafka.example\n');
  await makeSigned('server', 'ca', 'kafka.example');
  await openssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
    '-keyout',
    'self.key',
    '-out',
    'self.crt',
  ]);
  for (const name of ['ca', 'server', 'self']) {
    pem[`${name}.crt`] = await readFile(join(dir, `${name}.crt`), 'utf8');
    pem[`${name}.key`] = await readFile(join(dir, `${name}.key`), 'utf8');
  }
}, 150_000);

afterAll(async () => {
  for (const server of servers) server.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The certificate with the last byte of its signature changed: the CA's signature no longer verifies. */
function tampered(certificate: string): string {
  const der = Buffer.from(certificate.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
  der.writeUInt8(der.readUInt8(der.length - 1) ^ 0xff, der.length - 1);
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

/** A TLS server on loopback that completes handshakes and then closes the connection (it speaks no Kafka). */
async function tlsServer(options: TlsOptions): Promise<string> {
  const server = createServer(options, (socket) => socket.end());
  server.on('tlsClientError', () => undefined);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return `127.0.0.1:${address.port}`;
}

/** Connects with a long start budget: a certificate failure must not use it up. */
async function connectError(brokers: string, ssl: KafkaBrokerOptions['ssl'], startTimeoutMs = 20_000): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  const broker = new KafkaBroker({ brokers, ssl, startTimeoutMs, retry: { retries: 1, initialRetryTimeMs: 50 } });
  const error = await broker.connect().catch((e: unknown) => e);
  return { error, ms: Date.now() - started };
}

describe('KafkaBroker TLS verification failures', () => {
  it('a certificate from an unknown CA is a CertificateError, not retriable, raised at once', async () => {
    const brokers = await tlsServer({ cert: pem['server.crt'], key: pem['server.key'] });
    const { error, ms } = await connectError(brokers, { servername: 'kafka.example' });
    expect(error).toBeInstanceOf(CertificateError);
    expect((error as CertificateError).retriable).toBe(false);
    expect(String(error)).toMatch(/TLS verification with Kafka at 127\.0\.0\.1:\d+ failed: .*(issuer|verify)/i);
    expect(ms).toBeLessThan(5_000);
  });

  it('a self-signed certificate is a CertificateError', async () => {
    const brokers = await tlsServer({ cert: pem['self.crt'], key: pem['self.key'] });
    const { error, ms } = await connectError(brokers, true);
    expect(error).toBeInstanceOf(CertificateError);
    expect(String(error)).toMatch(/self[- ]signed/i);
    expect(ms).toBeLessThan(5_000);
  });

  it('a certificate for another host name is a CertificateError', async () => {
    const brokers = await tlsServer({ cert: pem['server.crt'], key: pem['server.key'] });
    // The CA is trusted, but the certificate names kafka.example and the client checks 127.0.0.1.
    const { error, ms } = await connectError(brokers, { ca: [file('ca.crt')] });
    expect(error).toBeInstanceOf(CertificateError);
    expect(String(error)).toMatch(/altnames|host/i);
    expect(ms).toBeLessThan(5_000);
  });

  it('a certificate whose signature does not verify is a CertificateError', async () => {
    const brokers = await tlsServer({ cert: tampered(file('server.crt')), key: pem['server.key'] });
    const { error, ms } = await connectError(brokers, { ca: [file('ca.crt')], servername: 'kafka.example' });
    expect(error).toBeInstanceOf(CertificateError);
    expect(String(error)).toMatch(/signature/i);
    expect(ms).toBeLessThan(5_000);
  });

  it('a handshake that verifies is not a certificate problem: a connection that then fails stays a retriable ConnectionError', async () => {
    const brokers = await tlsServer({ cert: pem['server.crt'], key: pem['server.key'] });
    const { error } = await connectError(brokers, { ca: [file('ca.crt')], servername: 'kafka.example' }, 500);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).not.toBeInstanceOf(CertificateError);
    expect((error as ConnectionError).retriable).toBe(true);
  });
});

describe('KafkaBroker credentials in errors and logs', () => {
  const password = 'pw-Zq81-never-shown';

  /** Every message of an error and its causes. */
  function texts(error: unknown): string {
    const out: string[] = [];
    for (let e = error, i = 0; e instanceof Error && i < 10; i++, e = e.cause) out.push(`${e.name}: ${e.message}`);
    return out.join('\n');
  }

  it('the SASL password appears in no error and no log line, whatever fails', async () => {
    const cases: { brokers: string; expected: typeof BrokerError }[] = [
      { brokers: KAFKA_SASL, expected: AuthenticationError }, // wrong password
      { brokers: KAFKA, expected: ConnectionError }, // a listener without SASL
      { brokers: '127.0.0.1:1', expected: ConnectionError }, // nobody listens
    ];
    for (const { brokers, expected } of cases) {
      const lines: KafkaLogEntry[] = [];
      const broker = new KafkaBroker({
        brokers,
        sasl: { mechanism: 'plain', username: 'ktransport', password },
        startTimeoutMs: 1_000,
        retry: { retries: 1, initialRetryTimeMs: 50 },
        logger: (entry) => lines.push(entry),
      });
      const error = await broker.connect().catch((e: unknown) => e);
      expect(error, brokers).toBeInstanceOf(expected);
      expect(texts(error)).not.toContain(password);
      expect(lines.length, `${brokers}: the failure was logged`).toBeGreaterThan(0);
      expect(JSON.stringify(lines)).not.toContain(password);
    }
  });
});
