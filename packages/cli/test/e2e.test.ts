import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

// `ktransport publish` (in this process through `run`, and the binary with a stdin body)
// read by `ktransport tail --count --json` (the binary), on every transport.

const streams: string[] = [];
const redisKeys: string[] = [];

beforeAll(async () => {
  assertBuilt();
  await ensureBrokers();
}, 150_000);

afterAll(async () => {
  for (const name of streams) await deleteNatsStream(name);
  if (redisKeys.length > 0) await tool('redis-cli', ['-h', '127.0.0.1', '-p', '6379', 'DEL', ...redisKeys]);
});

interface Case {
  readonly name: string;
  readonly url: string;
  /** A fresh topic, and the options tail and publish need for it. */
  readonly fresh: () => { topic: string; tail: string[]; publish: string[] };
}

const cases: Case[] = [
  { name: 'mqtt', url: MQTT_URL, fresh: () => ({ topic: `${unique('mqtt')}/t`, tail: [], publish: [] }) },
  { name: 'kafka', url: KAFKA_URL, fresh: () => ({ topic: unique('kafka'), tail: ['--from-beginning'], publish: [] }) },
  { name: 'amqp', url: AMQP_URL, fresh: () => ({ topic: `${unique('amqp')}/t`, tail: [], publish: ['--mandatory'] }) },
  {
    name: 'nats',
    url: NATS_URL,
    fresh: () => {
      const topic = `${unique('nats')}/t`;
      const stream = unique('S');
      streams.push(stream);
      return { topic, tail: ['--stream', stream], publish: ['--stream', stream] };
    },
  },
  {
    name: 'redis',
    url: REDIS_URL,
    fresh: () => {
      const topic = unique('redis');
      redisKeys.push(topic);
      return { topic, tail: [], publish: [] };
    },
  },
];

describe.each(cases)('$name', ({ url, fresh }) => {
  it('publish then tail --count --json: headers, key and JSON body round-trip; stdin body', async () => {
    const { topic, tail: tailOptions, publish } = fresh();
    const tail = start(['tail', url, topic, '--count', '2', '--json', ...tailOptions]);
    await tail.waitFor('waiting for messages');

    const first = await runHere(['publish', url, topic, '{"n": 1, "text": "grüße"}', '-H', 'x-site=berlin', '--header', 'x-eq=a=b', '--key', 'k1', ...publish]);
    expect(first.stderr).toBe('');
    expect(first).toMatchObject({ code: 0, stdout: `published ${topic}\n` });
    const second = await cli(['publish', url, topic, '-', '-k', 'k2', ...publish], { stdin: '[2, {"deep": null}]\n' });
    expect(second.code, second.stderr).toBe(0);

    const outcome = await tail.done;
    expect(outcome.code, outcome.stderr).toBe(0);
    const lines = jsonLines(outcome.stdout).sort((a, b) => String(a.key).localeCompare(String(b.key)));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({
      topic,
      key: 'k1',
      headers: { 'x-site': 'berlin', 'x-eq': 'a=b', 'content-type': 'application/json' },
      contentType: 'application/json',
      encoding: 'json',
      body: { n: 1, text: 'grüße' },
    });
    expect(lines[1]).toMatchObject({ topic, key: 'k2', encoding: 'json', body: [2, { deep: null }] });
    for (const line of lines) {
      expect(Object.keys(line)).toEqual(expect.arrayContaining(['topic', 'headers', 'encoding', 'body']));
    }
  });
});

describe('options per transport', () => {
  it('kafka: --count and --rate repeat a publish; tail --from-beginning reads them all', async () => {
    const topic = unique('kafka-rate');
    const published = await runHere(['publish', KAFKA_URL, topic, 'tick', '--codec', 'text', '--count', '3', '--rate', '20']);
    expect(published.code, published.stderr).toBe(0);
    expect(published.stdout.trim().split('\n')).toEqual([`published ${topic} #1/3`, `published ${topic} #2/3`, `published ${topic} #3/3`]);
    expect(published.stderr).toMatch(/published 3 of 3 to /);
    expect(published.ms).toBeGreaterThanOrEqual(100); // two gaps of 50 ms at 20/s
    const tail = await cli(['tail', KAFKA_URL, topic, '--from-beginning', '--count', '3', '--json']);
    expect(tail.code, tail.stderr).toBe(0);
    expect(jsonLines(tail.stdout).map((l) => [l.encoding, l.body, l.contentType])).toEqual(Array(3).fill(['text', 'tick', 'text/plain; charset=utf-8']));
  });

  it('nats: tail --from-beginning (deliverPolicy all) reads what was stored before it', async () => {
    const topic = `${unique('nats-all')}/t`;
    const stream = unique('S');
    streams.push(stream);
    expect((await runHere(['publish', NATS_URL, topic, '{"early":true}', '--stream', stream])).code).toBe(0);
    const tail = await cli(['tail', NATS_URL, topic, '--stream', stream, '--from-beginning', '--count', '1', '--json']);
    expect(tail.code, tail.stderr).toBe(0);
    expect(jsonLines(tail.stdout)[0]).toMatchObject({ topic, body: { early: true } });
  });

  it('redis: tail --group --from-beginning reads what was added before it', async () => {
    const topic = unique('redis-all');
    redisKeys.push(topic);
    expect((await runHere(['publish', REDIS_URL, topic, 'x', '--codec', 'text'])).code).toBe(0);
    const tail = await cli(['tail', REDIS_URL, topic, '--group', 'g1', '--from-beginning', '--count', '1']);
    expect(tail.code, tail.stderr).toBe(0);
    expect(tail.stdout).toContain(`── ${topic}`); // the readable view
    expect(tail.stdout).toMatch(/\nx\n$/);
  });

  it('mqtt: the readable view shows topic, headers and the decoded body; msgpack is decoded', async () => {
    const topic = `${unique('mqtt-view')}/t`;
    const tail = start(['tail', MQTT_URL, topic, '--count', '1']);
    await tail.waitFor('waiting for messages');
    expect((await runHere(['publish', MQTT_URL, topic, '{"a":[1,2]}', '--codec', 'msgpack', '-H', 'h=v', '--qos', '2'])).code).toBe(0);
    const { code, stdout } = await tail.done;
    expect(code).toBe(0);
    expect(stdout).toContain(`── ${topic}`);
    expect(stdout).toContain('   h: v');
    expect(stdout).toContain('   content-type: application/msgpack');
    expect(stdout).toContain('"a": [\n    1,\n    2\n  ]');
  });

  it('publish --count interrupted by SIGTERM stops repeating and exits 130', async () => {
    const publish = start(['publish', MQTT_URL, `${unique('int')}/t`, '{}', '--count', '1000', '--rate', '5']);
    // After the first confirmed publish: the signal handlers are in place by then, however slow the start.
    for (let waited = 0; !publish.stdoutBytes().includes('published'); waited += 50) {
      if (waited > 20_000) throw new Error('no publish within 20 s');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    publish.kill('SIGTERM');
    const outcome = await publish.done;
    expect(outcome.code, outcome.stderr).toBe(130);
    expect(outcome.stderr).toMatch(/published \d+ of 1000 to /);
  });

  it('tail ends with 0 on SIGINT after draining', async () => {
    const tail = start(['tail', MQTT_URL, `${unique('sig')}/#`]);
    await tail.waitFor('waiting for messages');
    tail.kill('SIGINT');
    const outcome = await tail.done;
    expect(outcome.code, outcome.stderr).toBe(0);
  });
});
