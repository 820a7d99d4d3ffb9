import { spawn } from 'node:child_process';
import type { Broker, Handler } from '@ktransport/broker';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ConnectOptions, natsSubject, openBroker } from '../src/connect.js';
import {
  AMQP_URL,
  assertBuilt,
  cli,
  deleteNatsStream,
  ensureBrokers,
  jsonLines,
  KAFKA_URL,
  MQTT_URL,
  NATS_URL,
  REDIS_URL,
  runHere,
  start,
  tool,
  unique,
} from './helpers.js';

// `ktransport request` (in this process through `run`, and the binary) answered by a
// ktransport responder on each transport that has request–reply, and by a foreign
// MQTT 5 responder (mosquitto_sub + mosquitto_pub with Response Topic and Correlation Data).

beforeAll(async () => {
  assertBuilt();
  await ensureBrokers();
}, 150_000);

const responders: Broker[] = [];
afterEach(async () => {
  await Promise.all(responders.splice(0).map((b) => b.disconnect().catch(() => undefined)));
});

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups) await cleanup();
});

interface Case {
  readonly name: string;
  readonly url: string;
  /**
   * A fresh topic; the command's extra options and the responder's connect options for it
   * (e.g. a stream to create), and what to delete afterwards.
   */
  readonly fresh: () => { topic: string; request?: string[]; responder?: Partial<ConnectOptions>; cleanup?: () => Promise<void> };
}

/** The transports with request–reply: adding one is adding its line here (with what its topics need). */
const transports: Case[] = [
  { name: 'mqtt', url: MQTT_URL, fresh: () => ({ topic: `${unique('rr')}/t` }) },
  { name: 'kafka', url: KAFKA_URL, fresh: () => ({ topic: unique('rr') }) },
  { name: 'amqp', url: AMQP_URL, fresh: () => ({ topic: `${unique('rr')}/t` }) },
  { name: 'nats', url: NATS_URL, fresh: () => natsTopic() },
  { name: 'redis', url: REDIS_URL, fresh: () => redisTopic() },
];

/** NATS: a request is a stored JetStream publish, so the topic needs a stream (created by both sides, deleted afterwards). */
function natsTopic(): ReturnType<Case['fresh']> {
  const topic = `${unique('rr')}/t`;
  const name = unique('S');
  return {
    topic,
    request: ['--stream', name],
    responder: { stream: { name, subjects: [natsSubject(topic)] } },
    cleanup: () => deleteNatsStream(name),
  };
}

/** Redis: the topic is a stream key, deleted afterwards. */
function redisTopic(): ReturnType<Case['fresh']> {
  const topic = unique('rr');
  return { topic, cleanup: async () => void (await tool('redis-cli', ['-h', '127.0.0.1', '-p', '6379', 'DEL', topic])) };
}

/** A ktransport service answering `topic` with `handler`, opened by URL as the command opens its broker. */
async function responder(url: string, topic: string, handler: Handler, extra: Partial<ConnectOptions> = {}): Promise<void> {
  const opened = openBroker({ url, env: {}, timeoutMs: 10_000, report: () => undefined, ...extra });
  responders.push(opened.broker);
  await opened.broker.connect();
  await opened.broker.subscribe(topic, handler, { retry: { attempts: 1 } });
}

describe.each(transports)('$name', ({ url, fresh }) => {
  function topicFor(): { topic: string; request: string[]; responder: Partial<ConnectOptions> } {
    const { topic, request = [], responder: extra = {}, cleanup } = fresh();
    if (cleanup) cleanups.push(cleanup);
    return { topic, request, responder: extra };
  }

  it('--json: one line with the reply (topic, headers, content type, decoded body); headers and key reach the responder', async () => {
    const { topic, request, responder: extra } = topicFor();
    await responder(url, topic, (m) => ({ got: m.body, key: m.key ?? null, site: m.headers['x-site'] ?? null }), extra);
    const outcome = await runHere(['request', url, topic, '{"sku": "A-1", "n": 2}', '-H', 'x-site=berlin', '--key', 'k1', '--json', ...request]);
    expect(outcome.code, outcome.stderr).toBe(0);
    const lines = jsonLines(outcome.stdout);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      headers: { 'content-type': 'application/json' },
      contentType: 'application/json',
      encoding: 'json',
      body: { got: { sku: 'A-1', n: 2 }, key: 'k1', site: 'berlin' },
    });
    // The requester's own reply topic (ktransport/reply/<uuid> on MQTT), and the correlation id the responder echoed.
    expect(typeof lines[0]?.topic === 'string' && lines[0].topic !== '' && lines[0].topic !== topic).toBe(true);
    expect((lines[0]?.headers as Record<string, unknown>)['correlation-id']).toMatch(/\S/);
    expect(outcome.stderr).toContain(`request to ${topic} on ${url.replace(':guest@', ':***@')}: waiting for the reply (at most 10000 ms)`);
  });

  it('the binary: a stdin body with --codec text, the readable view of the reply', async () => {
    const { topic, request, responder: extra } = topicFor();
    await responder(url, topic, (m) => `${typeof m.body}:${String(m.body)}:${m.headers['content-type']}`, extra);
    const outcome = await cli(['request', url, topic, '-', '--codec', 'text', ...request], { stdin: 'hello there' });
    expect(outcome.code, outcome.stderr).toBe(0);
    expect(outcome.stdout).toMatch(/^── \S+/); // the reply topic, then what the transport tells
    expect(outcome.stdout).toContain('   content-type: application/json');
    expect(outcome.stdout).toMatch(/\n"string:hello there:text\/plain; charset=utf-8"\n$/);
  });

  it('a responder that fails: its error type and message, exit 1', async () => {
    const { topic, request, responder: extra } = topicFor();
    await responder(
      url,
      topic,
      () => {
        throw new TypeError('no such sku: A-9');
      },
      extra,
    );
    const outcome = await runHere(['request', url, topic, '{"sku":"A-9"}', ...request]);
    expect(outcome.code).toBe(1);
    expect(outcome.stdout).toBe('');
    expect(outcome.stderr).toContain(`ktransport: the responder on ${topic} failed: TypeError: no such sku: A-9\n`);
  });

  it('no reply within --timeout (fractions of seconds): exit 124 saying so', async () => {
    const { topic, request } = topicFor();
    const outcome = await runHere(['request', url, topic, '{}', '--timeout', '0.5', ...request]);
    expect(outcome.code, outcome.stderr).toBe(124);
    expect(outcome.stdout).toBe('');
    expect(outcome.stderr).toContain(`no reply to the request to ${topic} within 500 ms`);
    expect(outcome.ms).toBeGreaterThanOrEqual(500);
    expect(outcome.ms).toBeLessThan(8_000);
  });

  it('a responder that returns nothing: also no reply', async () => {
    const { topic, request, responder: extra } = topicFor();
    let seen = 0;
    await responder(url, topic, () => void seen++, extra);
    const outcome = await runHere(['request', url, topic, '{}', '--timeout', '0.8', ...request]);
    expect(outcome.code, outcome.stderr).toBe(124);
    expect(seen).toBe(1);
  });
});

describe('mqtt', () => {
  it('SIGINT while waiting for the reply: exit 130', async () => {
    const request = start(['request', MQTT_URL, `${unique('rr-int')}/t`, '{}', '--timeout', '60']);
    await request.waitFor('waiting for the reply');
    request.kill('SIGINT');
    const outcome = await request.done;
    expect(outcome.code, outcome.stderr).toBe(130);
    expect(outcome.stderr).toContain('interrupted before its reply');
    expect(outcome.ms).toBeLessThan(30_000);
  });

  it('a foreign responder (mosquitto_sub/mosquitto_pub): --qos reaches it, a reply without content type is shown as tail shows it, or read with --reply-codec', async () => {
    const topic = `${unique('rr-foreign')}/t`;
    const foreign = foreignResponder(topic, 2, () => '{"from":"mosquitto"}');
    await foreign.ready;
    const plain = await runHere(['request', MQTT_URL, topic, '{"q":1}', '--qos', '2', '--json']);
    expect(plain.code, plain.stderr).toBe(0);
    expect(jsonLines(plain.stdout)[0]).toMatchObject({ encoding: 'json', body: { from: 'mosquitto' } });
    expect(jsonLines(plain.stdout)[0]).not.toHaveProperty('contentType');
    const asText = await runHere(['request', MQTT_URL, topic, '{"q":2}', '--reply-codec', 'text', '--json']);
    expect(asText.code, asText.stderr).toBe(0);
    expect(jsonLines(asText.stdout)[0]).toMatchObject({ encoding: 'text', body: '{"from":"mosquitto"}' });
    const seen = await foreign.done;
    // The request's QoS as the responder received it (subscribed with QoS 2), and the request body compact.
    expect(seen.map((r) => [r.qos, r.payload])).toEqual([
      ['2', '{"q":1}'],
      ['1', '{"q":2}'],
    ]);
  });

  it('--reply-codec msgpack decodes a foreign binary reply; without it the reply is base64', async () => {
    const topic = `${unique('rr-msgpack')}/t`;
    // MessagePack of {"a":1}.
    const foreign = foreignResponder(topic, 2, () => Buffer.from([0x81, 0xa1, 0x61, 0x01]));
    await foreign.ready;
    const decoded = await runHere(['request', MQTT_URL, topic, '{}', '--reply-codec', 'msgpack', '--json']);
    expect(decoded.code, decoded.stderr).toBe(0);
    expect(jsonLines(decoded.stdout)[0]).toMatchObject({ encoding: 'json', body: { a: 1 } });
    const raw = await runHere(['request', MQTT_URL, topic, '{}', '--json']);
    expect(raw.code, raw.stderr).toBe(0);
    expect(jsonLines(raw.stdout)[0]).toMatchObject({ encoding: 'base64', body: Buffer.from([0x81, 0xa1, 0x61, 0x01]).toString('base64') });
    await foreign.done;
  });
  it('a foreign reply its content type cannot decode: DecodeError, exit 1, nothing on stdout', async () => {
    const topic = `${unique('rr-undecodable')}/t`;
    const foreign = foreignResponder(topic, 1, () => '{not json', 'application/json');
    await foreign.ready;
    const outcome = await runHere(['request', MQTT_URL, topic, '{}', '--json']);
    expect(outcome.code, outcome.stderr).toBe(1);
    expect(outcome.stdout).toBe('');
    expect(outcome.stderr).toContain(`request to ${topic} failed: cannot decode the 9-byte reply to the request to ${topic}`);
    await foreign.done;
  });
});

describe('options of one transport', () => {
  it('amqp --mandatory: a request nobody is bound for fails at once with UnroutableError, exit 1', async () => {
    const topic = `${unique('rr-unroutable')}/t`;
    const outcome = await runHere(['request', AMQP_URL, topic, '{}', '--mandatory', '--timeout', '20']);
    expect(outcome.code, outcome.stderr).toBe(1);
    expect(outcome.stderr).toContain(`request to ${topic} failed: the broker returned the mandatory message for ${topic}`);
    expect(outcome.ms).toBeLessThan(10_000);
  });

  it('nats without --stream: NoStreamError, exit 1', async () => {
    const outcome = await runHere(['request', NATS_URL, `${unique('rr-nostream')}/t`, '{}']);
    expect(outcome.code, outcome.stderr).toBe(1);
    expect(outcome.stderr).toMatch(/request to \S+ failed: .*no JetStream stream captures the subject/);
    // The hint that helps, not nats.js' wording of the cause ("jetstream is not enabled": it is).
    expect(outcome.stderr).toContain('--stream NAME');
    expect(outcome.stderr).not.toContain('not enabled');
  });
});

describe('usage errors exit 2, failures 1', () => {
  it.each([
    [['request', MQTT_URL, 'a/b'], 'request needs a body'],
    [['request', MQTT_URL], 'request needs <url> <topic> <body | ->'],
    [['request', MQTT_URL, 'a/b', 'not json'], 'the body is not JSON'],
    [['request', MQTT_URL, 'a/b', '{}', '--timeout', '0'], '--timeout must be a positive number'],
    [['request', MQTT_URL, 'a/b', '{}', '--reply-codec', 'yaml'], '--reply-codec must be one of json, text, bytes, msgpack'],
    [['request', MQTT_URL, 'a/b', '{}', '--codec', 'yaml'], '--codec must be one of json, text, bytes, msgpack'],
    [['request', MQTT_URL, 'a/b', '{}', '-H', 'novalue'], '--header takes name=value'],
    [['request', MQTT_URL, 'a/b', '{}', '--qos', '3'], '--qos must be a whole number from 0 to 2'],
    [['request', 'redis://127.0.0.1:6379', 'a', '{}', '--qos', '1'], '--qos and --retain are MQTT options'],
    [['request', MQTT_URL, 'a/b', '{}', '--stream', 'S'], '--stream is a NATS option'],
    [['request', NATS_URL, 'a/b', '{}', '--mandatory'], '--mandatory is an AMQP option'],
    [['request', 'foo://127.0.0.1:1', 'a', '{}'], 'unknown URL scheme "foo:"'],
    [['request', MQTT_URL, 'a/b', '{}', '--count', '2'], "Unknown option '--count'"],
  ])('%j', async (args, message) => {
    const { code, stderr } = await runHere(args);
    expect(code, stderr).toBe(2);
    expect(stderr).toContain(message);
    expect(stderr).toContain('Run "ktransport request --help" for usage.');
  });

  it('request --help describes the exit statuses; the top-level help lists the command', async () => {
    const help = await cli(['request', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: ktransport request <url> <topic> <body \| ->/);
    expect(help.stdout).toContain('124 no reply within --timeout');
    expect((await runHere(['--help'])).stdout).toContain('request <url> <topic> <body | ->');
  });

  it('an unreachable broker: exit 1, the password masked (URL and KTRANSPORT_PASSWORD)', async () => {
    const inUrl = await cli(['request', 'mqtt://user:S3cr3t-pw@127.0.0.1:1', 'a/b', '{}', '--timeout', '3']);
    expect(inUrl.code).toBe(1);
    expect(inUrl.stderr).toContain('***');
    expect(inUrl.stderr).not.toContain('S3cr3t-pw');
    const fromEnv = await runHere(['request', 'mqtt://127.0.0.1:1', 'a/b', '{}', '--timeout', '3'], {
      env: { KTRANSPORT_USERNAME: 'u', KTRANSPORT_PASSWORD: 'Env-s3cret' },
    });
    expect(fromEnv.code).toBe(1);
    expect(fromEnv.stderr).not.toContain('Env-s3cret');
  });
});

/** A request as mosquitto_sub printed it. */
interface Received {
  readonly qos: string;
  readonly responseTopic: string;
  readonly correlation: string;
  readonly payload: string;
}

/**
 * A foreign MQTT 5 responder: mosquitto_sub (QoS 2) prints each request's QoS,
 * Response Topic, Correlation Data and payload; mosquitto_pub answers on the
 * Response Topic with the same Correlation Data and no content type.
 */
function foreignResponder(
  topic: string,
  count: number,
  reply: (request: Received) => string | Buffer,
  contentType?: string,
): { ready: Promise<void>; done: Promise<Received[]> } {
  // Line-buffered: mosquitto_sub's stdout into a pipe is block-buffered otherwise (SUBACK and requests would come at its exit).
  const sub = spawn('stdbuf', [
    ...['-oL', 'mosquitto_sub'],
    ...['-h', '127.0.0.1', '-p', '1883', '-V', '5', '-q', '2', '-t', topic, '-C', String(count), '-W', '30', '-d'],
    ...['-F', 'REQ\t%q\t%R\t%D\t%p'],
  ]);
  const received: Received[] = [];
  const answers: Promise<unknown>[] = [];
  let buffered = '';
  let subscribed!: () => void;
  const ready = new Promise<void>((resolve) => (subscribed = resolve));
  sub.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      if (line.includes('SUBACK')) subscribed();
      if (!line.startsWith('REQ\t')) continue;
      const [, qos = '', responseTopic = '', correlation = '', payload = ''] = line.split('\t');
      const request = { qos, responseTopic, correlation, payload };
      received.push(request);
      const body = reply(request);
      const args = ['-h', '127.0.0.1', '-p', '1883', '-V', '5', '-q', '1', '-t', responseTopic, '-D', 'publish', 'correlation-data', correlation];
      if (contentType !== undefined) args.push('-D', 'publish', 'content-type', contentType);
      answers.push(typeof body === 'string' ? tool('mosquitto_pub', [...args, '-m', body]) : tool('mosquitto_pub', [...args, '-s'], body));
    }
  });
  const done = new Promise<Received[]>((resolve, reject) => {
    sub.on('close', (code) => {
      subscribed();
      Promise.all(answers).then(() => (code === 0 ? resolve(received) : reject(new Error(`mosquitto_sub exited ${code}`))), reject);
    });
  });
  return { ready, done };
}
