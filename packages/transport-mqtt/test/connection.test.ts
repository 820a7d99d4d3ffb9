import { ConfigurationError, ConnectionError, type Message } from '@ktransport/broker';
import { MqttBroker, type MqttBrokerOptions } from '@ktransport/transport-mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureMosquitto, freePort } from './mosquitto.js';
import { type TcpProxy, tcpProxy } from './network.js';
import { open, outcome, sleep, states, topic, waitFor } from './helpers.js';

const proxies: TcpProxy[] = [];
beforeAll(ensureMosquitto);
afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()));
});

/** A proxy to the shared Mosquitto that the test can cut or freeze. */
async function proxy(): Promise<TcpProxy> {
  const p = await tcpProxy(1883);
  proxies.push(p);
  return p;
}

describe('configuration errors at construction', () => {
  const invalid: [string, MqttBrokerOptions][] = [
    ['an http:// url', { url: 'http://127.0.0.1:1883' }],
    ['a tcp:// url', { url: 'tcp://127.0.0.1:1883' }],
    ['something that is no url', { url: 'localhost 1883' }],
    ['tls options on mqtt://', { url: 'mqtt://127.0.0.1:1883', tls: { rejectUnauthorized: false } }],
    ['a persistent session without clientId', { clean: false }],
    ['MQTT 5 properties on 3.1.1', { protocolVersion: 4, receiveMaximum: 10 }],
    ['will headers on 3.1.1', { protocolVersion: 4, will: { topic: 'w', body: 1, headers: { a: 'b' } } }],
    ['a will topic with wildcards', { will: { topic: 'w/#', body: 1 } }],
    // Strings MQTT cannot carry in CONNECT: every connection attempt would fail.
    ['a will topic with a control character', { will: { topic: 'w/\u0001', body: 1 } }],
    ['a will header with a control character', { will: { topic: 'w', body: 1, headers: { note: 'a\nb' } } }],
    ['a will header name with an unpaired surrogate', { will: { topic: 'w', body: 1, headers: { '\ud800': 'v' } } }],
    ['a will header over 65,535 bytes', { will: { topic: 'w', body: 1, headers: { big: 'x'.repeat(70_000) } } }],
    ['a will body over 65,535 bytes', { will: { topic: 'w', body: 'x'.repeat(70_000), codec: 'text' } }],
    ['a clientId with a control character', { clientId: 'a\u0007b' }],
    ['a username with a noncharacter', { username: 'a\uffff' }],
    // @ts-expect-error an unknown codec name does not compile either
    ['an unknown will codec', { will: { topic: 'w', body: 1, codec: 'yaml' } }],
    ['receiveMaximum 0', { receiveMaximum: 0 }],
    // @ts-expect-error an unknown codec name does not compile either
    ['an unknown default codec', { defaultCodec: 'yaml' }],
  ];
  for (const [what, options] of invalid) {
    it(`rejects ${what}`, () => {
      expect(() => new MqttBroker(options)).toThrow(ConfigurationError);
    });
  }
});

describe('first connection', () => {
  it('rejects with a ConnectionError when nothing listens, instead of retrying forever', async () => {
    const broker = new MqttBroker({ url: `mqtt://127.0.0.1:${await freePort()}` });
    const seen = states(broker);
    const started = Date.now();
    await expect(broker.connect()).rejects.toBeInstanceOf(ConnectionError);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(seen).toEqual(['disconnected', 'connecting', 'disconnected']);
    await expect(broker.publish('t', 1)).rejects.toBeInstanceOf(ConnectionError);
  });

  it('gives up after connectTimeoutMs when the server never answers', async () => {
    const silent = await tcpProxy(undefined);
    proxies.push(silent);
    const started = Date.now();
    const error = await outcome(new MqttBroker({ url: `mqtt://127.0.0.1:${silent.port}`, connectTimeoutMs: 400 }).connect());
    expect(error).toBeInstanceOf(ConnectionError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe('reconnecting', () => {
  it('reports state changes, reconnects after reconnectPeriodMs and keeps its subscriptions', async () => {
    const p = await proxy();
    const broker = await open({ url: `mqtt://127.0.0.1:${p.port}`, reconnectPeriodMs: 100 });
    const seen = states(broker);
    const t = topic('reconnect');
    const got: number[] = [];
    await broker.subscribe<number>(t, (m) => void got.push(m.body));
    p.cut();
    await waitFor(
      () => broker.state === 'reconnecting',
      2_000,
      () => broker.state,
    );
    const lost = Date.now();
    await waitFor(
      () => broker.state === 'connected',
      2_000,
      () => broker.state,
    );
    expect(Date.now() - lost).toBeLessThan(700); // the default period is 1,000 ms
    await broker.publish(t, 7);
    await waitFor(
      () => got.length === 1,
      5_000,
      () => 'not resubscribed',
    );
    await broker.disconnect();
    expect(seen).toEqual(['connected', 'reconnecting', 'connected', 'closed']);
  });

  it('notices a dead connection within keepaliveSeconds and reconnects', async () => {
    const p = await proxy();
    const broker = await open({ url: `mqtt://127.0.0.1:${p.port}`, keepaliveSeconds: 1, reconnectPeriodMs: 100 });
    const seen = states(broker);
    p.freeze();
    await waitFor(
      () => seen.includes('reconnecting'),
      5_000,
      () => `states ${seen.join(',')}`,
    );
    await waitFor(
      () => broker.state === 'connected',
      5_000,
      () => broker.state,
    );
  });

  it('rejects QoS 1 publishes still waiting for PUBACK with a ConnectionError when disconnect() closes the connection', async () => {
    const p = await proxy();
    // disconnect() waits up to connectTimeoutMs for a graceful close that a frozen connection never completes.
    const broker = await open({ url: `mqtt://127.0.0.1:${p.port}`, reconnectPeriodMs: 5_000, connectTimeoutMs: 1_000 });
    const t = topic('unconfirmed');
    await broker.publish(t, 0, { qos: 1 });
    p.freeze();
    const waiting = [1, 2, 3].map((n) => outcome(broker.publish(t, n, { qos: 1 })));
    await sleep(200);
    await broker.disconnect();
    const errors = await Promise.all(waiting);
    for (const error of errors) {
      expect(error).toBeInstanceOf(ConnectionError);
      expect((error as Error).message).toMatch(/before the broker confirmed the message/);
    }
  });

  it('rejects a publish while the connection is lost with a retriable ConnectionError', async () => {
    const p = await proxy();
    const broker = await open({ url: `mqtt://127.0.0.1:${p.port}`, reconnectPeriodMs: 5_000 });
    p.cut();
    await waitFor(
      () => broker.state === 'reconnecting',
      2_000,
      () => broker.state,
    );
    const error = await outcome(broker.publish(topic('lost'), 1));
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).retriable).toBe(true);
  });
});

describe('acknowledgements across a reconnect (persistent session)', () => {
  for (const when of ['after', 'before'] as const) {
    it(`handles a message once when its handler finishes ${when} the connection came back, and acknowledges it`, async () => {
      const p = await proxy();
      const t = topic(`adopt-${when}`);
      const clientId = `ktm-adopt-${t}`;
      const broker = await open({ url: `mqtt://127.0.0.1:${p.port}`, clientId, clean: false, reconnectPeriodMs: 300 });
      let calls = 0;
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      await broker.subscribe(t, async () => {
        calls++;
        await gate;
      });
      const publisher = await open();
      await publisher.publish(t, 1);
      await waitFor(
        () => calls === 1,
        5_000,
        () => 'not delivered',
      );
      p.cut();
      await waitFor(
        () => broker.state === 'reconnecting',
        2_000,
        () => broker.state,
      );
      if (when === 'before') release(); // its acknowledgement cannot be sent now: it is owed to the resent copy
      await waitFor(
        () => broker.state === 'connected',
        5_000,
        () => broker.state,
      );
      await sleep(300); // the broker resends the unacknowledged message with DUP set
      release();
      await sleep(300);
      expect(calls).toBe(1);
      await broker.disconnect();
      const again: unknown[] = [];
      const next = await open({ clientId, clean: false, sessionExpiryInterval: 0 });
      await next.subscribe(t, (m) => void again.push(m.body));
      await sleep(500);
      expect(again).toEqual([]); // acknowledged: the session has nothing left
    });
  }
});

describe('last will', () => {
  it('is published by the broker when the connection vanishes, not on disconnect()', async () => {
    const watcher = await open();
    const willTopic = topic('will');
    const wills: Message[] = [];
    await watcher.subscribe(willTopic, (m) => void wills.push(m), { qos: 2 });
    const will = { topic: willTopic, body: { status: 'gone' }, headers: { 'x-agent': 'a1' } };

    const polite = await open({ will });
    await polite.disconnect();
    await sleep(300);
    expect(wills).toEqual([]);

    const p = await proxy();
    await open({ url: `mqtt://127.0.0.1:${p.port}`, will, reconnectPeriodMs: 60_000 });
    p.cut();
    await waitFor(
      () => wills.length === 1,
      5_000,
      () => 'no will',
    );
    expect(wills[0]?.body).toEqual({ status: 'gone' });
    expect(wills[0]?.headers).toMatchObject({ 'content-type': 'application/json', 'x-agent': 'a1' });
    expect(wills[0]?.raw).toMatchObject({ qos: 1, retain: false }); // the defaults
  });

  it('honours the will codec, qos and retain', async () => {
    const willTopic = topic('will-retained');
    const p = await proxy();
    await open({
      url: `mqtt://127.0.0.1:${p.port}`,
      will: { topic: willTopic, body: 'offline', codec: 'text', qos: 2, retain: true },
      reconnectPeriodMs: 60_000,
    });
    const watcher = await open();
    const wills: Message[] = [];
    await watcher.subscribe(willTopic, (m) => void wills.push(m), { qos: 2 });
    p.cut();
    await waitFor(
      () => wills.length === 1,
      5_000,
      () => 'no will',
    );
    expect(wills[0]?.body).toBe('offline');
    expect(wills[0]?.headers['content-type']).toMatch(/^text\/plain/);
    expect(wills[0]?.raw).toMatchObject({ qos: 2 });
    const late: Message[] = [];
    const latecomer = await open();
    await latecomer.subscribe(willTopic, (m) => void late.push(m));
    await waitFor(
      () => late.length === 1,
      5_000,
      () => 'the will was not retained',
    );
    expect((late[0]?.raw as { retain?: boolean }).retain).toBe(true);
    await watcher.publish(willTopic, '', { codec: 'text', retain: true });
  });
});

describe('sessions', () => {
  it('lets a persistent session expire after sessionExpiryInterval seconds', async () => {
    const t = topic('expiry');
    const clientId = `ktm-expiry-${t}`;
    const first = await open({ clientId, clean: false, sessionExpiryInterval: 1 });
    await first.subscribe(t, () => undefined);
    await first.disconnect();
    const publisher = await open();
    await publisher.publish(t, 'while away');
    await sleep(2_500);
    const got: unknown[] = [];
    const second = await open({ clientId, clean: false, sessionExpiryInterval: 0 });
    await second.subscribe(t, (m) => void got.push(m.body));
    await sleep(500);
    expect(got).toEqual([]); // with the default (never expires) it would have been kept: see delivery.test.ts
  });
});
