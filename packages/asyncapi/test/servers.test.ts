import { describe, expect, it } from 'vitest';
import { ConfigurationError, Publishes } from '@ktransport/broker';
import { asyncApiDocument } from '@ktransport/asyncapi';
import { parserErrors } from './validate.js';

class Sender {
  @Publishes('t')
  send(): void {}
}

const info = { title: 'Servers', version: '1.0.0' };

describe('servers', () => {
  const servers = {
    mqtt: 'mqtt://127.0.0.1:1883',
    mqtts: { url: 'mqtts://user:secret@broker.example:8883', description: 'TLS' },
    ws: 'ws://127.0.0.1:8080/mqtt',
    wss: 'wss://broker.example/mqtt',
    kafka: 'kafka://k1:9092,k2:9092',
    amqp: 'amqp://guest:guest@127.0.0.1:5672/orders',
    amqps: 'amqps://rabbit.example:5671',
    nats: 'nats://token@127.0.0.1:4222',
    natsTls: 'tls://nats.example:4222',
    redis: 'redis://:secret@127.0.0.1:6379/2?timeout=5',
    rediss: 'rediss://redis.example:6380',
  };
  const document = asyncApiDocument({ info, services: [Sender], servers });

  it('take the protocol from the URL scheme', () => {
    const protocols = Object.fromEntries(Object.entries(document.servers ?? {}).map(([name, server]) => [name, server.protocol]));
    expect(protocols).toEqual({
      amqp: 'amqp',
      amqps: 'amqps',
      kafka: 'kafka',
      mqtt: 'mqtt',
      mqtts: 'secure-mqtt',
      nats: 'nats',
      natsTls: 'nats',
      redis: 'redis',
      rediss: 'redis',
      ws: 'ws',
      wss: 'wss',
    });
  });

  it('keep host, port and path, never credentials or query', () => {
    expect(document.servers?.mqtts).toEqual({ host: 'broker.example:8883', protocol: 'secure-mqtt', description: 'TLS' });
    expect(document.servers?.amqp).toEqual({ host: '127.0.0.1:5672', protocol: 'amqp', pathname: '/orders' });
    expect(document.servers?.kafka).toEqual({ host: 'k1:9092,k2:9092', protocol: 'kafka' });
    expect(document.servers?.redis).toEqual({ host: '127.0.0.1:6379', protocol: 'redis', pathname: '/2' });
    expect(document.servers?.ws).toEqual({ host: '127.0.0.1:8080', protocol: 'ws', pathname: '/mqtt' });
    const text = JSON.stringify(document);
    for (const secret of ['secret', 'guest', 'token', 'user', 'timeout']) expect(text).not.toContain(secret);
  });

  it('pass the official parser', async () => {
    expect(await parserErrors(document)).toEqual([]);
  });

  it('refuse a URL that names no broker, without echoing its password', () => {
    for (const url of ['memory:', 'http://host:80', 'host:1883', 'mqtt://user:hunter2@', 'mqtt://user:hunter2@/path']) {
      let error: unknown;
      try {
        asyncApiDocument({ info, services: [Sender], servers: { bad: url } });
      } catch (caught) {
        error = caught;
      }
      expect(error, url).toBeInstanceOf(ConfigurationError);
      expect(String(error)).not.toContain('hunter2');
    }
  });

  it('find the host after the last @ of a password that was not percent-encoded', () => {
    const { servers: found } = asyncApiDocument({ info, services: [Sender], servers: { odd: 'mqtt://u:p@ss@host:1883' } });
    expect(found?.odd).toEqual({ host: 'host:1883', protocol: 'mqtt' });
  });

  it('are left out when none are given', () => {
    expect(asyncApiDocument({ info, services: [Sender] })).not.toHaveProperty('servers');
  });
});
