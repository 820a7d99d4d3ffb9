import { beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ensureBrokers, jsonLines, KAFKA_URL, MQTT_URL, runHere, script, start, tool, unique } from './helpers.js';

// Foreign clients on the same wire: mosquitto_pub/mosquitto_sub (MQTT 5) and kcat (Kafka).

beforeAll(async () => {
  assertBuilt();
  await ensureBrokers();
  await script('kafka.sh', 'tools'); // installs kcat when missing
}, 150_000);

describe('mqtt', () => {
  it('ktransport publish is read by mosquitto_sub -v with the exact payload bytes', async () => {
    const topic = `${unique('sub')}/t`;
    // Retained, so that mosquitto_sub gets it whenever it subscribes.
    const published = await runHere(['publish', MQTT_URL, topic, '{ "a" : [1, 2] }', '--retain']);
    expect(published.code, published.stderr).toBe(0);
    try {
      const { stdout } = await tool('mosquitto_sub', ['-h', '127.0.0.1', '-p', '1883', '-V', '5', '-t', topic, '-v', '-C', '1', '-W', '5']);
      expect(stdout.toString('utf8')).toBe(`${topic} {"a":[1,2]}\n`); // json is sent as the json codec writes it: compact
      const text = await runHere(['publish', MQTT_URL, topic, 'tab\there', '--codec', 'text', '--retain']);
      expect(text.code).toBe(0);
      const raw = await tool('mosquitto_sub', ['-h', '127.0.0.1', '-p', '1883', '-t', topic, '-C', '1', '-W', '5', '-N']);
      expect(raw.stdout.equals(Buffer.from('tab\there'))).toBe(true); // text: the bytes as given
    } finally {
      await tool('mosquitto_pub', ['-h', '127.0.0.1', '-p', '1883', '-t', topic, '-r', '-n']);
    }
  });

  it('mosquitto_pub with user properties and content type is read by ktransport tail --json; a binary body comes as base64', async () => {
    const topic = `${unique('pub')}/t`;
    const tail = start(['tail', MQTT_URL, topic, '--count', '2', '--json']);
    await tail.waitFor('waiting for messages');
    await tool('mosquitto_pub', [
      ...['-h', '127.0.0.1', '-p', '1883', '-V', '5', '-q', '1', '-t', topic],
      ...['-D', 'publish', 'user-property', 'k', 'v', '-D', 'publish', 'content-type', 'application/json', '-m', '{"from":"mosquitto"}'],
    ]);
    await tool(
      'mosquitto_pub',
      ['-h', '127.0.0.1', '-p', '1883', '-V', '5', '-q', '1', '-t', topic, '-D', 'publish', 'content-type', 'application/json', '-s'],
      Buffer.from([0xff, 0x00, 0xfe, 0x1b]),
    );
    const { code, stdout, stderr } = await tail.done;
    expect(code, stderr).toBe(0);
    const [first, second] = jsonLines(stdout);
    expect(first).toMatchObject({ topic, headers: { k: 'v', 'content-type': 'application/json' }, encoding: 'json', body: { from: 'mosquitto' } });
    expect(second).toMatchObject({ topic, encoding: 'base64', body: Buffer.from([0xff, 0x00, 0xfe, 0x1b]).toString('base64') });
    expect(second?.decodeError).toEqual(expect.any(String));
  });

  it('the readable view escapes control characters of a foreign payload', async () => {
    const topic = `${unique('esc')}/t`;
    const tail = start(['tail', MQTT_URL, topic, '--count', '1']);
    await tail.waitFor('waiting for messages');
    await tool('mosquitto_pub', ['-h', '127.0.0.1', '-p', '1883', '-q', '1', '-t', topic, '-m', '\u001b[2Jred\u0007']);
    const { code, stdout } = await tail.done;
    expect(code).toBe(0);
    expect(stdout).toContain('\\u001b[2Jred\\u0007');
    expect(stdout).not.toContain('\u001b');
  });
});

describe('kafka (kcat)', () => {
  it('ktransport publish is read by kcat with key, headers and exact value; kcat -P is read by tail --json', async () => {
    const topic = unique('kcat');
    const published = await runHere(['publish', KAFKA_URL, topic, '{"x": 1}', '-k', 'key-1', '-H', 'h1=v1']);
    expect(published.code, published.stderr).toBe(0);
    const { stdout } = await tool(
      'kcat',
      ['-b', '127.0.0.1:9092', '-C', '-t', topic, '-o', 'beginning', '-c', '1', '-e', '-f', '%k|%h|%s\n'],
      undefined,
      20_000,
    );
    const [key, headers, value] = stdout.toString('utf8').trim().split('|');
    expect(key).toBe('key-1');
    expect(headers).toContain('h1=v1');
    expect(headers).toContain('content-type=application/json');
    expect(value).toBe('{"x":1}');

    const foreign = unique('kcat-p');
    await tool('kcat', ['-b', '127.0.0.1:9092', '-P', '-t', foreign, '-k', 'fk', '-H', 'origin=kcat'], 'plain words\n', 20_000);
    const tail = await start(['tail', KAFKA_URL, foreign, '--from-beginning', '--count', '1', '--json']).done;
    expect(tail.code, tail.stderr).toBe(0);
    // No content type: JSON if it parses, else text.
    expect(jsonLines(tail.stdout)[0]).toMatchObject({ topic: foreign, key: 'fk', headers: { origin: 'kcat' }, encoding: 'text', body: 'plain words' });
  });
});
