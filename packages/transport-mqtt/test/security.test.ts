import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AuthenticationError, CertificateError, ConfigurationError, ConnectionError } from '@ktransport/broker';
import { MqttBroker, type MqttBrokerOptions } from '@ktransport/transport-mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, Mosquitto, tool } from './mosquitto.js';
import { type TcpProxy, tcpProxy } from './network.js';
import { open, outcome, sleep, topic, waitFor } from './helpers.js';

const exec = promisify(execFile);

/** A CA, a server certificate for the name broker.test only, and a client certificate, made with openssl. */
interface Pki {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A second CA and a client certificate it signed: trusted by nobody here. */
  otherCa: string;
  otherClientCert: string;
  otherClientKey: string;
}

async function makePki(): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), 'ktransport-pki-'));
  const p = (name: string): string => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await exec('openssl', ['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=ktransport test CA']);
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
  await exec('openssl', ['req', '-x509', ...ec, '-keyout', p('other-ca.key'), '-out', p('other-ca.crt'), '-days', '2', '-subj', '/CN=another CA']);
  await writeFile(p('other-client.ext'), 'extendedKeyUsage=clientAuth\n');
  await exec('openssl', ['req', ...ec, '-keyout', p('other-client.key'), '-out', p('other-client.csr'), '-subj', '/CN=stranger']);
  await exec('openssl', [
    'x509',
    '-req',
    '-in',
    p('other-client.csr'),
    '-CA',
    p('other-ca.crt'),
    '-CAkey',
    p('other-ca.key'),
    '-CAcreateserial',
    '-out',
    p('other-client.crt'),
    '-days',
    '2',
    '-extfile',
    p('other-client.ext'),
  ]);
  const read = (name: string): Promise<string> => readFile(p(name), 'utf8');
  return {
    dir,
    ca: await read('ca.crt'),
    serverCert: await read('server.crt'),
    serverKey: await read('server.key'),
    clientCert: await read('client.crt'),
    clientKey: await read('client.key'),
    otherCa: await read('other-ca.crt'),
    otherClientCert: await read('other-client.crt'),
    otherClientKey: await read('other-client.key'),
  };
}

let pki: Pki;
let mosquitto: Mosquitto;
let tlsUrl: string;
let mutualUrl: string;
let passwordUrl: string;
let wsUrl: string;
let wssUrl: string;

beforeAll(async () => {
  pki = await makePki();
  const passwords = join(pki.dir, 'passwords');
  await tool('mosquitto_passwd', ['-c', '-b', passwords, 'saver', 'right-password']);
  const certs = [`cafile ${join(pki.dir, 'ca.crt')}`, `certfile ${join(pki.dir, 'server.crt')}`, `keyfile ${join(pki.dir, 'server.key')}`];
  mosquitto = await Mosquitto.start({
    persistence: false,
    global: ['per_listener_settings true'],
    listeners: [
      [...certs, 'allow_anonymous true'],
      [...certs, 'require_certificate true', 'allow_anonymous true'],
      [`password_file ${passwords}`, 'allow_anonymous false'],
      // Debian's Mosquitto 2.0.11 has websockets (libwebsockets built in). It binds a websockets
      // listener to the listener's address only with socket_domain ipv4 (else to every interface).
      ['protocol websockets', 'socket_domain ipv4', 'allow_anonymous true'],
      [
        'protocol websockets',
        'socket_domain ipv4',
        `certfile ${join(pki.dir, 'server.crt')}`,
        `keyfile ${join(pki.dir, 'server.key')}`,
        'allow_anonymous true',
      ],
    ],
  });
  const [tls, mutual, password, ws, wss] = mosquitto.ports;
  tlsUrl = `mqtts://127.0.0.1:${tls}`;
  mutualUrl = `mqtts://127.0.0.1:${mutual}`;
  passwordUrl = `mqtt://127.0.0.1:${password}`;
  wsUrl = `ws://127.0.0.1:${ws}/mqtt`;
  wssUrl = `wss://127.0.0.1:${wss}/mqtt`;
}, 60_000);

const proxies: TcpProxy[] = [];

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await mosquitto?.destroy();
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

/** Publishes one message to itself and waits for it. */
async function roundTrip(options: MqttBrokerOptions): Promise<void> {
  const broker = await open(options);
  const t = topic('secure');
  const got: unknown[] = [];
  await broker.subscribe(t, (m) => void got.push(m.body));
  await broker.publish(t, { secret: 42 });
  await waitFor(
    () => got.length === 1,
    5_000,
    () => 'nothing received',
  );
  expect(got).toEqual([{ secret: 42 }]);
}

function failure(options: MqttBrokerOptions): Promise<unknown> {
  return new MqttBroker({ connectTimeoutMs: 5_000, tracing: false, metrics: false, ...options }).connect().then(
    () => 'connected',
    (e: unknown) => e,
  );
}

describe('TLS', () => {
  it('connects with the CA that signed the broker certificate and the name in it (servername)', async () => {
    await roundTrip({ url: tlsUrl, tls: { ca: pki.ca, servername: 'broker.test' } });
  });

  it('refuses a broker certificate it cannot verify with a non-retriable CertificateError, unless told not to check it', async () => {
    const unknownCa = await failure({ url: tlsUrl, tls: { servername: 'broker.test' } });
    expect(unknownCa).toBeInstanceOf(CertificateError);
    expect(unknownCa).toBeInstanceOf(ConnectionError);
    expect((unknownCa as CertificateError).retriable).toBe(false);
    const wrongName = await failure({ url: tlsUrl, tls: { ca: pki.ca } });
    expect(wrongName).toBeInstanceOf(CertificateError);
    expect((wrongName as CertificateError).retriable).toBe(false);
    expect(String((wrongName as Error).message)).toMatch(/broker\.test|altnames|hostname/i);
    const otherCa = await failure({ url: tlsUrl, tls: { ca: pki.otherCa, servername: 'broker.test' } });
    expect(otherCa).toBeInstanceOf(CertificateError);
    await roundTrip({ url: tlsUrl, tls: { rejectUnauthorized: false } });
  });

  it('presents a client certificate for mutual TLS; a client without one, or with one the broker does not trust, gets a CertificateError', async () => {
    await roundTrip({ url: mutualUrl, tls: { ca: pki.ca, servername: 'broker.test', cert: pki.clientCert, key: pki.clientKey } });
    for (const tls of [{}, { cert: pki.otherClientCert, key: pki.otherClientKey }]) {
      const refused = await failure({ url: mutualUrl, tls: { ca: pki.ca, servername: 'broker.test', ...tls } });
      expect(refused).toBeInstanceOf(CertificateError);
      expect((refused as CertificateError).retriable).toBe(false);
    }
  });
});

describe('username and password', () => {
  it('connects with the right password', async () => {
    await roundTrip({ url: passwordUrl, username: 'saver', password: 'right-password' });
  });

  it('rejects a wrong password with an AuthenticationError (MQTT 5 and 3.1.1), without retrying', async () => {
    for (const protocolVersion of [5, 4] as const) {
      const started = Date.now();
      const error = await failure({ url: passwordUrl, username: 'saver', password: 'wrong', protocolVersion });
      expect(error).toBeInstanceOf(AuthenticationError);
      expect((error as AuthenticationError).retriable).toBe(false);
      expect(Date.now() - started).toBeLessThan(3_000);
    }
    expect(await failure({ url: passwordUrl })).toBeInstanceOf(AuthenticationError);
  });
});

describe('credentials in the URL', () => {
  const secret = 'pa55-in-the-url';
  const noSecret = (error: unknown): void => {
    expect(error).toBeInstanceOf(Error);
    for (let e: unknown = error; e instanceof Error; e = e.cause) {
      expect(e.message).not.toContain(secret);
      expect(e.message).not.toContain('right-password');
    }
  };

  it('are used to connect', async () => {
    await roundTrip({ url: `mqtt://saver:right-password@127.0.0.1:${new URL(passwordUrl).port}` });
  });

  it('never appear in an error message: refused, unreachable, certificate, configuration', async () => {
    const port = new URL(passwordUrl).port;
    const refused = await failure({ url: `mqtt://saver:${secret}@127.0.0.1:${port}` });
    expect(refused).toBeInstanceOf(AuthenticationError);
    expect((refused as Error).message).toContain('***');
    noSecret(refused);
    const unreachable = await failure({ url: `mqtt://saver:${secret}@127.0.0.1:${await freePort()}` });
    expect(unreachable).toBeInstanceOf(ConnectionError);
    noSecret(unreachable);
    const certificate = await failure({ url: `mqtts://saver:${secret}@127.0.0.1:${new URL(tlsUrl).port}`, tls: { servername: 'broker.test' } });
    expect(certificate).toBeInstanceOf(CertificateError);
    noSecret(certificate);
    let configuration: unknown;
    try {
      new MqttBroker({ url: `mqtt://saver:${secret}@127.0.0.1:${port}`, tls: { rejectUnauthorized: false } });
    } catch (error) {
      configuration = error;
    }
    expect(configuration).toBeInstanceOf(ConfigurationError);
    noSecret(configuration);
  });

  it('never appear in a publish error: connection lost, or closed before the broker confirmed', async () => {
    const proxy = await tcpProxy(Number(new URL(passwordUrl).port));
    proxies.push(proxy);
    const broker = await open({ url: `mqtt://saver:right-password@127.0.0.1:${proxy.port}`, reconnectPeriodMs: 60_000, connectTimeoutMs: 1_000 });
    const t = topic('redacted');
    await broker.publish(t, 1);
    proxy.freeze();
    const unconfirmed = outcome(broker.publish(t, 2));
    await sleep(100);
    proxy.cut();
    await waitFor(
      () => broker.state === 'reconnecting',
      5_000,
      () => broker.state,
    );
    const lost = await outcome(broker.publish(t, 3));
    expect(lost).toBeInstanceOf(ConnectionError);
    noSecret(lost);
    await broker.disconnect();
    noSecret(await unconfirmed);
  });
});

describe('WebSocket URLs (Mosquitto websockets listeners)', () => {
  it('speaks MQTT over ws://', async () => {
    await roundTrip({ url: wsUrl });
  });

  it('speaks MQTT over wss:// with the test CA; an unknown CA is a CertificateError', async () => {
    await roundTrip({ url: wssUrl, tls: { ca: pki.ca, servername: 'broker.test' } });
    expect(await failure({ url: wssUrl, tls: { servername: 'broker.test' } })).toBeInstanceOf(CertificateError);
  });
});
