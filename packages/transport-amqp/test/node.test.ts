import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AuthenticationError, BrokerError, CertificateError, ConnectionError, type ConnectionState, PublishError } from '@ktransport/broker';
import { type AmqpBrokerOptions, PayloadTooLargeError } from '@ktransport/transport-amqp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open, outcome, sleep, states, unique, waitFor } from './helpers.js';
import { answers, freePort, RabbitMq } from './rabbitmq.js';

/**
 * Tests on a private RabbitMQ node of this file's own (one node start for all of them),
 * configured with a TLS listener that requires client certificates, a user and vhost of
 * its own, and a small max_message_size: a restart in the middle of a stream, the
 * broker's limits, TLS and credentials.
 */

const exec = promisify(execFile);

/** The private node's `max_message_size`: small, so that the broker's own refusal can be seen. */
const BROKER_MAX_MESSAGE = 64 * 1024;

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
      `max_message_size = ${BROKER_MAX_MESSAGE}`,
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

describe('a broker restart in the middle of a stream (private node)', () => {
  it('publishers see success or a typed error, never a silent drop; every confirmed message is consumed; state goes reconnecting and back promptly', async () => {
    const broker = await open({ url: rabbit.url, reconnectPeriodMs: 200 });
    const seen: { state: ConnectionState; at: number }[] = [];
    broker.onStateChange((state) => seen.push({ state, at: Date.now() }));
    const t = unique('restart-stream');
    const consumed = new Set<number>();
    await broker.subscribe<{ n: number }>(t, (m) => void consumed.add(m.body.n), { group: unique('g'), concurrency: 4 });
    // A subscription without a group: its exclusive queue is made again on the new connection.
    const alone = new Set<number>();
    await broker.subscribe<{ n: number }>(t, (m) => void alone.add(m.body.n));
    const acked = new Set<number>();
    const failures: unknown[] = [];
    let publishing = true;
    let next = 0;
    const publisher = async (): Promise<void> => {
      while (publishing && next < 100_000) {
        const n = next++;
        await broker.publish(t, { n }, { key: `k${n % 5}` }).then(
          () => acked.add(n),
          (error: unknown) => failures.push(error),
        );
        if (failures.length > 0 && broker.state !== 'connected') await sleep(20);
      }
    };
    const publishers = [publisher(), publisher(), publisher(), publisher()];
    try {
      await waitFor(
        () => acked.size >= 300,
        20_000,
        () => `acked before the restart ${acked.size}`,
      );
      const stopping = Date.now();
      await rabbit.stop();
      expect(
        seen.find((s) => s.state === 'reconnecting' && s.at >= stopping),
        'reconnecting while the broker is down',
      ).toBeDefined();
      await rabbit.restart();
      const restarted = Date.now();
      const before = acked.size;
      await waitFor(
        () => acked.size >= before + 300,
        30_000,
        () => `acked after the restart ${acked.size - before}`,
      );
      const back = seen.find((s) => s.state === 'connected' && s.at >= stopping);
      expect(back, 'connected again').toBeDefined();
      expect(defined(back).at - restarted).toBeLessThan(5_000);
    } finally {
      publishing = false;
      await Promise.all(publishers);
    }
    expect(failures.filter((e) => !(e instanceof BrokerError))).toEqual([]);
    expect(failures.length).toBeGreaterThan(0);
    await waitFor(
      () => [...acked].every((n) => consumed.has(n)),
      30_000,
      () => `unconsumed ${[...acked].filter((n) => !consumed.has(n)).length} of ${acked.size}`,
    );
    const last = Math.max(...acked);
    await waitFor(
      () => alone.has(last),
      10_000,
      () => `the subscription without a group did not get ${last} after the restart`,
    );
  }, 120_000);

  it('request() answers again after the broker restarted: the reply queue is declared again on the new connection', async () => {
    const responder = await open({ url: rabbit.url, reconnectPeriodMs: 200 });
    const requester = await open({ url: rabbit.url, reconnectPeriodMs: 200 });
    const t = unique('restart-request');
    await responder.subscribe<number>(t, (m) => m.body * 2, { group: unique('g') });
    expect((await requester.request<number>(t, 1, { timeoutMs: 5_000 })).body).toBe(2);
    await rabbit.restart();
    await waitFor(
      () => requester.state === 'connected' && responder.state === 'connected',
      30_000,
      () => `requester ${requester.state}, responder ${responder.state}`,
    );
    expect((await requester.request<number>(t, 2, { timeoutMs: 5_000 })).body).toBe(4);
  }, 120_000);
});

function defined<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('missing');
  return value;
}

describe('limits the broker enforces (private node)', () => {
  it("a payload over the broker's max_message_size rejects with PayloadTooLargeError; the connection and other subscriptions go on", async () => {
    const broker = await open({ url: rabbit.url });
    const seen = states(broker);
    const t = unique('too-large');
    const got: number[] = [];
    await broker.subscribe<number>(t, (m) => void got.push(m.body));
    const error = await outcome(broker.publish(t, 'x'.repeat(BROKER_MAX_MESSAGE + 1_000), { codec: 'text' }));
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect(error).toMatchObject({ limit: undefined, retriable: false });
    await broker.publish(t, 1);
    await broker.publish(t, 2);
    await waitFor(
      () => got.length === 2,
      5_000,
      () => `got ${got.join(',')}`,
    );
    expect(seen).toEqual(['connected']);
  });

  it('publishTimeoutMs: while the broker blocks publishers (memory alarm), publish rejects with a retriable PublishError in time', async () => {
    const broker = await open({ url: rabbit.url, publishTimeoutMs: 500 });
    const t = unique('blocked');
    await broker.publish(t, 0);
    await rabbit.ctl('set_vm_memory_high_watermark', '0');
    try {
      // The alarm blocks connections that publish; give it a moment to be raised.
      await sleep(500);
      const started = Date.now();
      const error = await outcome(broker.publish(t, 1));
      expect(error).toBeInstanceOf(PublishError);
      expect((error as PublishError).retriable).toBe(true);
      expect(String(error)).toMatch(/publishTimeoutMs \(500 ms\)/);
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      await rabbit.ctl('set_vm_memory_high_watermark', '0.4');
    }
  });
});
