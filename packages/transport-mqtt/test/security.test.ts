import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AuthenticationError, ConnectionError } from '@ktransport/broker';
import { MqttBroker, type MqttBrokerOptions } from '@ktransport/transport-mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Mosquitto, SHARED_URL, tool } from './mosquitto.js';
import { type Relay, webSocketBridge } from './network.js';
import { open, topic, waitFor } from './helpers.js';

const exec = promisify(execFile);

/** A CA, a server certificate for the name broker.test only, and a client certificate, made with openssl. */
interface Pki {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

async function makePki(): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), 'ktransport-pki-'));
  const p = (name: string): string => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await exec('openssl', ['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=ktransport test CA']);
  const issue = async (name: string, subject: string, extensions: string): Promise<void> => {
    await writeFile(p(`${name}.ext`), `${extensions}\n`);
    await exec('openssl', ['req', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', subject]);
    await exec('openssl', ['x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial',
      '-out', p(`${name}.crt`), '-days', '2', '-extfile', p(`${name}.ext`)]);
  };
  await issue('server', '/CN=broker.test', 'subjectAltName=DNS:broker.test\nextendedKeyUsage=serverAuth');
  await issue('client', '/CN=ktransport-client', 'extendedKeyUsage=clientAuth');
  const read = (name: string): Promise<string> => readFile(p(name), 'utf8');
  return { dir, ca: await read('ca.crt'), serverCert: await read('server.crt'), serverKey: await read('server.key'), clientCert: await read('client.crt'), clientKey: await read('client.key') };
}

let pki: Pki;
let mosquitto: Mosquitto;
let tlsUrl: string;
let mutualUrl: string;
let passwordUrl: string;

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
    ],
  });
  const [tls, mutual, password] = mosquitto.ports;
  tlsUrl = `mqtts://127.0.0.1:${tls}`;
  mutualUrl = `mqtts://127.0.0.1:${mutual}`;
  passwordUrl = `mqtt://127.0.0.1:${password}`;
}, 60_000);

afterAll(async () => {
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
  await waitFor(() => got.length === 1, 5_000, () => 'nothing received');
  expect(got).toEqual([{ secret: 42 }]);
}

function failure(options: MqttBrokerOptions): Promise<unknown> {
  return new MqttBroker({ connectTimeoutMs: 5_000, tracing: false, metrics: false, ...options }).connect().then(() => 'connected', (e: unknown) => e);
}

describe('TLS', () => {
  it('connects with the CA that signed the broker certificate and the name in it (servername)', async () => {
    await roundTrip({ url: tlsUrl, tls: { ca: pki.ca, servername: 'broker.test' } });
  });

  it('refuses a broker certificate it cannot verify, unless told not to check it', async () => {
    const unknownCa = await failure({ url: tlsUrl, tls: { servername: 'broker.test' } });
    expect(unknownCa).toBeInstanceOf(ConnectionError);
    const wrongName = await failure({ url: tlsUrl, tls: { ca: pki.ca } });
    expect(wrongName).toBeInstanceOf(ConnectionError);
    expect(String((wrongName as Error).message)).toMatch(/broker\.test|altnames|hostname/i);
    await roundTrip({ url: tlsUrl, tls: { rejectUnauthorized: false } });
  });

  it('presents a client certificate for mutual TLS, and the broker refuses a client without one', async () => {
    await roundTrip({ url: mutualUrl, tls: { ca: pki.ca, servername: 'broker.test', cert: pki.clientCert, key: pki.clientKey } });
    const refused = await failure({ url: mutualUrl, tls: { ca: pki.ca, servername: 'broker.test' } });
    expect(refused).toBeInstanceOf(ConnectionError);
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

describe('WebSocket URLs', () => {
  const bridges: Relay[] = [];
  afterAll(async () => {
    await Promise.all(bridges.map((b) => b.close()));
  });

  it('speaks MQTT over ws:// (relayed to Mosquitto, which is built without websockets here)', async () => {
    const bridge = await webSocketBridge(Number(new URL(SHARED_URL).port));
    bridges.push(bridge);
    await roundTrip({ url: `ws://127.0.0.1:${bridge.port}/mqtt` });
  });

  it('speaks MQTT over wss:// with the test CA', async () => {
    const bridge = await webSocketBridge(Number(new URL(SHARED_URL).port), { cert: pki.serverCert, key: pki.serverKey });
    bridges.push(bridge);
    await roundTrip({ url: `wss://127.0.0.1:${bridge.port}/mqtt`, tls: { ca: pki.ca, servername: 'broker.test' } });
    expect(await failure({ url: `wss://127.0.0.1:${bridge.port}/mqtt`, tls: { servername: 'broker.test' } })).toBeInstanceOf(ConnectionError);
  });
});
