import { beforeAll, describe, expect, it } from 'vitest';
import { AuthenticationError, ConfigurationError, ConnectionError, type ConnectionState } from '@ktransport/broker';
import { freePort, waitFor } from '@ktransport/broker/testing';
import { KafkaBroker, type KafkaLogEntry, type KafkaSaslMechanism, KafkaServer } from '@ktransport/transport-kafka';
import { createTopic, defined, fast, KAFKA, KAFKA_SASL, SASL_PASSWORD, SASL_USER, sharedKafka, unique } from './helpers.js';

const kafka = sharedKafka();
let closedPort: number;

beforeAll(async () => {
  closedPort = await freePort();
});

describe('KafkaBroker brokers option', () => {
  it('accepts host:port, lists and kafka:// URLs', async () => {
    for (const brokers of [KAFKA, [KAFKA], `kafka://${KAFKA}`, `kafka://${KAFKA},${KAFKA}/`, [`kafka://${KAFKA}`]]) {
      const broker = new KafkaBroker({ brokers, ...fast });
      await broker.connect();
      await broker.publish(unique('url'), { ok: true });
      await broker.disconnect();
    }
  });

  it('rejects retry.retries 0 for the idempotent producer, which kafkajs could not run', () => {
    expect(() => new KafkaBroker({ brokers: KAFKA, retry: { retries: 0 } })).toThrow(ConfigurationError);
    expect(() => new KafkaBroker({ brokers: KAFKA, retry: { retries: 0 }, producer: { idempotent: false } })).not.toThrow();
  });

  it('never shows a password given in a brokers URL', () => {
    for (const brokers of [
      'kafka://app:s3cr3t-pw@127.0.0.1:9092',
      'app:s3cr3t-pw@127.0.0.1:9092',
      ['kafka://app:s3cr3t-pw@h1:9092,h2:9092'],
      'kafka://app:s3cr3t/pw@host',
      'http://app:s3cr3t-pw@host:1',
    ]) {
      let error: unknown;
      try {
        new KafkaBroker({ brokers });
      } catch (e) {
        error = e;
      }
      expect(error, JSON.stringify(brokers)).toBeInstanceOf(ConfigurationError);
      expect(String(error)).not.toContain('s3cr3t');
      expect(String(error)).toContain('***@');
    }
  });

  it('rejects a wrong URL with a ConfigurationError', () => {
    for (const brokers of ['http://127.0.0.1:9092', 'kafka://', 'kafka://host', '127.0.0.1', 'host:99999', '', [], 'kafka://a:1,,b:2', 'a b:9092']) {
      expect(() => new KafkaBroker({ brokers }), JSON.stringify(brokers)).toThrow(ConfigurationError);
    }
  });
});

describe('KafkaBroker connection failures', () => {
  it('a missing broker is a ConnectionError naming the address; startTimeoutMs bounds how long connect and start keep trying', async () => {
    const address = `127.0.0.1:${closedPort}`;
    let started = Date.now();
    const quick = await new KafkaBroker({ brokers: address, startTimeoutMs: 300, retry: { retries: 1, initialRetryTimeMs: 50 } })
      .connect()
      .catch((e: unknown) => e);
    const quickMs = Date.now() - started;
    expect(quick).toBeInstanceOf(ConnectionError);
    expect(String(quick)).toContain(`cannot connect to Kafka at ${address}`);
    expect(String(quick)).toContain('ECONNREFUSED');
    expect(String(quick)).toContain('startTimeoutMs');
    expect(quickMs).toBeLessThan(1_300);
    // kafkajs gives up after one retry (about 100 ms here); connect keeps trying for the whole budget.
    started = Date.now();
    const server = new KafkaServer({ broker: { brokers: address, startTimeoutMs: 2_000, retry: { retries: 1, initialRetryTimeMs: 50 } } });
    const patient = await server.start().catch((e: unknown) => e);
    const patientMs = Date.now() - started;
    expect(patient).toBeInstanceOf(ConnectionError);
    expect(patientMs).toBeGreaterThanOrEqual(1_900);
    expect(patientMs).toBeLessThan(3_500);
  });

  it('ssl turns TLS on: a plaintext listener then fails the handshake', async () => {
    const error = await new KafkaBroker({
      brokers: KAFKA,
      ssl: { rejectUnauthorized: false },
      startTimeoutMs: 500,
      retry: { retries: 1, initialRetryTimeMs: 50 },
    })
      .connect()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(String(error)).toMatch(/TLS|SSL|socket/i);
  });

  it('logger receives kafkajs errors', async () => {
    const entries: KafkaLogEntry[] = [];
    await new KafkaBroker({
      brokers: `127.0.0.1:${closedPort}`,
      startTimeoutMs: 500,
      retry: { retries: 1, initialRetryTimeMs: 50 },
      logger: (e) => entries.push(e),
    })
      .connect()
      .catch(() => undefined);
    expect(entries.some((e) => e.level === 'error' && /ECONNREFUSED/.test(e.message))).toBe(true);
  });
});

describe('KafkaBroker SASL', () => {
  const mechanisms: KafkaSaslMechanism[] = ['plain', 'scram-sha-256', 'scram-sha-512'];
  for (const mechanism of mechanisms) {
    it(`${mechanism}: accepts the right password and refuses a wrong one with an AuthenticationError`, async () => {
      const good = new KafkaBroker({ brokers: KAFKA_SASL, sasl: { mechanism, username: SASL_USER, password: SASL_PASSWORD }, ...fast });
      await good.connect();
      try {
        const topic = await createTopic(kafka.admin, unique(`sasl-${mechanism}`), 1);
        const got: number[] = [];
        await good.subscribe<{ n: number }>(topic, (m) => void got.push(m.body.n), { group: unique('g') });
        await good.publish(topic, { n: 42 });
        await waitFor(
          () => got.length === 1,
          10_000,
          () => 'nothing received over SASL',
        );
      } finally {
        await good.disconnect();
      }
      const bad = new KafkaBroker({ brokers: KAFKA_SASL, sasl: { mechanism, username: SASL_USER, password: 'wrong' }, ...fast });
      const error = await bad.connect().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AuthenticationError);
      expect((error as AuthenticationError).retriable).toBe(false);
      expect(String(error)).toContain('refused the credentials');
      expect(bad.state).toBe('disconnected');
    });
  }

  it('rejects an unknown SASL mechanism at construction', () => {
    expect(() => new KafkaBroker({ brokers: KAFKA_SASL, sasl: { mechanism: 'gssapi', username: 'u', password: 'p' } as never })).toThrow(ConfigurationError);
  });
});

describe('KafkaBroker identity and health', () => {
  it('clientId is what the group coordinator sees', async () => {
    const broker = new KafkaBroker({ brokers: KAFKA, clientId: 'saver-service', ...fast });
    await broker.connect();
    try {
      const topic = await createTopic(kafka.admin, unique('client'), 1);
      const group = unique('g');
      await broker.subscribe(topic, () => undefined, { group });
      const { groups } = await kafka.admin.describeGroups([group]);
      expect(defined(groups[0], 'the group').members.map((m) => m.clientId)).toEqual(['saver-service']);
    } finally {
      await broker.disconnect();
    }
  });

  it('reports its connection state and stops reporting to removed listeners', async () => {
    const broker = new KafkaBroker({ brokers: KAFKA, ...fast });
    const seen: ConnectionState[] = [];
    const off = broker.onStateChange((s) => seen.push(s));
    expect(broker.state).toBe('disconnected');
    await broker.connect();
    expect(broker.state).toBe('connected');
    await broker.disconnect();
    off();
    await broker.connect();
    await broker.disconnect();
    expect(seen).toEqual(['connecting', 'connected', 'disconnected']);
  });
});
