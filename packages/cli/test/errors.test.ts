import { beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, cli, ensureBrokers, MQTT_URL, NATS_URL, runHere, unique } from './helpers.js';

// Exit statuses and messages: usage errors (2), broker failures (1), help (0), secrets never shown.

beforeAll(async () => {
  assertBuilt();
  await ensureBrokers();
}, 150_000);

describe('help', () => {
  it.each([['--help'], ['-h'], ['help'], ['help', 'tail'], ['publish', '--help'], ['tail', '--help'], ['asyncapi', '-h']])(
    'ktransport %s %s exits 0',
    async (...args) => {
      const { code, stdout, stderr } = await runHere(args.filter((a): a is string => typeof a === 'string'));
      expect(code, stderr).toBe(0);
      expect(stdout).toMatch(/^Usage: ktransport /);
    },
  );

  it('the binary: --help exits 0', async () => {
    const { code, stdout } = await cli(['--help']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: ktransport <command>/);
  });

  it('no command: the help on stdout, exit 2', async () => {
    const { code, stdout } = await cli([]);
    expect(code).toBe(2);
    expect(stdout).toContain('Commands:');
  });

  it('--version prints the package version', async () => {
    expect((await cli(['--version'])).stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});

describe('usage errors exit 2', () => {
  it('an unknown scheme lists the schemes', async () => {
    const { code, stderr } = await cli(['publish', 'foo://127.0.0.1:1', 'a', '{}']);
    expect(code).toBe(2);
    expect(stderr).toContain('unknown URL scheme "foo:"');
    for (const scheme of ['mqtt://', 'mqtts://', 'ws://', 'wss://', 'kafka://', 'amqp://', 'amqps://', 'nats://', 'tls://', 'redis://', 'rediss://']) {
      expect(stderr).toContain(scheme);
    }
    expect(stderr).toContain('Run "ktransport publish --help" for usage.');
  });

  it.each([
    [['publish', MQTT_URL, 'a/b', '{}', '--header', 'novalue'], '--header takes name=value, not "novalue"'],
    [['publish', MQTT_URL, 'a/b', 'not json'], 'the body is not JSON'],
    [['publish', MQTT_URL, 'a/b'], 'publish needs a body'],
    [['publish', MQTT_URL, 'a/b', '{}', '--codec', 'yaml'], '--codec must be one of json, text, bytes, msgpack'],
    [['publish', MQTT_URL, 'a/b', '{}', '--count', '0'], '--count must be a whole number from 1'],
    [['publish', 'redis://127.0.0.1:6379', 'a', '{}', '--qos', '1'], '--qos and --retain are MQTT options'],
    [['publish', 'memory:', 'a', '{}'], 'memory: is an in-process broker'],
    [['tail', MQTT_URL, 'a/#', '--from-beginning'], 'mqtt keeps no history'],
    [['tail', 'redis://127.0.0.1:6379', 'a', '--from-beginning'], '--from-beginning on redis needs --group'],
    [['tail', MQTT_URL, 'a', '--bogus'], "Unknown option '--bogus'"],
    [['frobnicate'], 'unknown command "frobnicate"'],
  ])('%j', async (args, message) => {
    const { code, stderr } = await runHere(args);
    expect(code, stderr).toBe(2);
    expect(stderr).toContain(message);
  });
});

describe('broker failures exit 1, passwords masked', () => {
  it('wrong AMQP credentials: an authentication message without the password', async () => {
    const { code, stderr } = await cli(['publish', 'amqp://guest:Wr0ng-s3cret@127.0.0.1:5672', 'a/b', '{}']);
    expect(code).toBe(1);
    expect(stderr).toMatch(/refused the credentials|ACCESS_REFUSED/);
    expect(stderr).not.toContain('Wr0ng-s3cret');
    expect(stderr).toContain('***@127.0.0.1:5672');
  });

  it('credentials from KTRANSPORT_USERNAME/KTRANSPORT_PASSWORD: refused ones are masked, right ones work', async () => {
    const bad = await cli(['tail', 'amqp://127.0.0.1:5672', 'a/b'], { env: { KTRANSPORT_USERNAME: 'guest', KTRANSPORT_PASSWORD: 'env-s3cret-pw' } });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/refused the credentials|ACCESS_REFUSED/);
    expect(bad.stderr).not.toContain('env-s3cret-pw');
    const good = await runHere(['publish', 'amqp://127.0.0.1:5672', `${unique('env')}/t`, '{}'], {
      env: { KTRANSPORT_USERNAME: 'guest', KTRANSPORT_PASSWORD: 'guest' },
    });
    expect(good.code, good.stderr).toBe(0);
  });

  it('kafka: URL credentials become SASL (scram with --sasl), the variables with KTRANSPORT_SASL_MECHANISM; refused ones masked', async () => {
    const topic = unique('sasl');
    const plain = await runHere(['publish', 'kafka://ktransport:ktransport-secret@127.0.0.1:9093', topic, '{}']);
    expect(plain.code, plain.stderr).toBe(0);
    const scram = await runHere(['publish', 'kafka://127.0.0.1:9093', topic, '{}'], {
      env: { KTRANSPORT_USERNAME: 'ktransport', KTRANSPORT_PASSWORD: 'ktransport-secret', KTRANSPORT_SASL_MECHANISM: 'scram-sha-512' },
    });
    expect(scram.code, scram.stderr).toBe(0);
    const refused = await runHere(['publish', 'kafka://ktransport:Wr0ng-kafka-pw@127.0.0.1:9093', topic, '{}', '--sasl', 'scram-sha-256']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/refused the credentials/);
    expect(refused.stderr).not.toContain('Wr0ng-kafka-pw');
  });

  it.each([['mqtt://127.0.0.1:1'], ['amqp://guest:guest@127.0.0.1:1'], ['nats://127.0.0.1:1'], ['redis://127.0.0.1:1'], ['kafka://127.0.0.1:1']])(
    'unreachable %s: exit 1 within the --timeout',
    async (url) => {
      const { code, stderr, ms } = await runHere(['publish', url, 'a', '{}', '--timeout', '3']);
      expect(code).toBe(1);
      expect(stderr).toMatch(/ECONNREFUSED|connect|reach/i);
      expect(ms).toBeLessThan(9_000);
    },
  );

  it('a header the transport refuses: exit 1 with its typed error', async () => {
    const { code, stderr } = await runHere(['publish', MQTT_URL, `${unique('hdr')}/t`, '{}', '-H', 'x=a\u0001b']);
    expect(code).toBe(1);
    expect(stderr).toMatch(/publish to .* failed: .*header/i);
  });

  it('nats without a stream for the subject: NoStreamError, exit 1', async () => {
    const { code, stderr } = await runHere(['publish', NATS_URL, `${unique('nostream')}/t`, '{}']);
    expect(code).toBe(1);
    expect(stderr).toMatch(/no JetStream stream captures the subject/);
    expect(stderr).toContain('--stream NAME');
    expect(stderr).not.toContain('not enabled');
  });
});
