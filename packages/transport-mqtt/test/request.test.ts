import { randomUUID } from 'node:crypto';
import { ConfigurationError, ConnectionError, type Message, RemoteError } from '@ktransport/broker';
import { InvalidHeaderError } from '@ktransport/transport-mqtt';
import mqtt from 'mqtt';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ensureMosquitto, SHARED_URL } from './mosquitto.js';
import { open, sleep, topic, waitFor } from './helpers.js';

beforeAll(ensureMosquitto);

const foreign: mqtt.MqttClient[] = [];
afterEach(async () => {
  await Promise.all(foreign.splice(0).map((c) => c.endAsync()));
});

/** A plain mqtt.js 5 client: a foreign requester or responder. */
async function device(): Promise<mqtt.MqttClient> {
  const client = await mqtt.connectAsync(SHARED_URL, { protocolVersion: 5, clientId: `device-${randomUUID().slice(0, 8)}`, reconnectPeriod: 0 });
  foreign.push(client);
  return client;
}

describe('request–reply over MQTT 5 (Response Topic, Correlation Data)', () => {
  it('answers a foreign mqtt.js requester on its Response Topic with its own Correlation Data, binary included', async () => {
    const t = topic('rr-foreign-requester');
    const responder = await open();
    await responder.subscribe<{ n: number }>(t, (m) => ({ double: m.body.n * 2 }));
    const client = await device();
    const responseTopic = topic('rr-foreign-inbox');
    const replies: mqtt.IPublishPacket[] = [];
    client.on('message', (_topic, _payload, packet) => void replies.push(packet));
    await client.subscribeAsync(responseTopic, { qos: 1 });
    const binary = Buffer.from([0xff, 0x00, 0x01, 0xfe]);
    const text = Buffer.from('order-42');
    for (const [n, correlationData] of [
      [1, binary],
      [2, text],
    ] as const) {
      await client.publishAsync(t, JSON.stringify({ n }), {
        qos: 1,
        properties: { contentType: 'application/json', responseTopic, correlationData },
      });
    }
    await waitFor(
      () => replies.length === 2,
      5_000,
      () => `${replies.length} replies`,
    );
    const byData = new Map(replies.map((p) => [Buffer.from(p.properties?.correlationData ?? []).toString('hex'), p]));
    const first = byData.get(binary.toString('hex'));
    const second = byData.get(text.toString('hex'));
    expect(JSON.parse(String(first?.payload))).toEqual({ double: 2 });
    expect(JSON.parse(String(second?.payload))).toEqual({ double: 4 });
    expect(first?.properties?.contentType).toMatch(/^application\/json/);
    // Carried as the MQTT properties, not as user properties besides them.
    expect(first?.properties?.userProperties?.['correlation-id']).toBeUndefined();
  });

  it('gets its reply from a foreign mqtt.js responder that answers on the Response Topic', async () => {
    const t = topic('rr-foreign-responder');
    const client = await device();
    const seen: mqtt.IPublishPacket[] = [];
    client.on('message', (_topic, payload, packet) => {
      seen.push(packet);
      const { responseTopic, correlationData } = packet.properties ?? {};
      if (responseTopic === undefined) return;
      const { n } = JSON.parse(String(payload)) as { n: number };
      void client.publishAsync(responseTopic, JSON.stringify({ triple: n * 3 }), {
        qos: 1,
        properties: { contentType: 'application/json', ...(correlationData ? { correlationData } : {}) },
      });
    });
    await client.subscribeAsync(t, { qos: 1 });
    const requester = await open();
    const replies = await Promise.all([1, 2, 3].map((n) => requester.request<{ triple: number }>(t, { n }, { timeoutMs: 5_000 })));
    expect(replies.map((r) => r.body.triple)).toEqual([3, 6, 9]);
    const request = seen[0];
    expect(request?.properties?.responseTopic).toMatch(/^ktransport\/reply\/[0-9a-f-]{36}$/);
    expect(String(request?.properties?.correlationData)).toMatch(/^[0-9a-f-]{36}$/);
    expect(request?.properties?.userProperties?.['reply-to']).toBeUndefined();
  });

  it('a restarted requester (a new instance) never gets the replies in flight to the old one', async () => {
    const t = topic('rr-restart');
    const responder = await open();
    await responder.subscribe<{ n: number; life: string }>(
      t,
      async (m) => {
        await sleep(300);
        return { n: m.body.n, life: m.body.life };
      },
      { concurrency: 20 },
    );
    const old = await open();
    const pending = Promise.allSettled([...Array(10).keys()].map((n) => old.request(t, { n, life: 'old' }, { timeoutMs: 5_000 })));
    await sleep(100);
    await old.disconnect();
    for (const outcome of await pending) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(ConnectionError);
    }
    // The old replies are published while the new requester waits for its own.
    const renewed = await open();
    const replies: Message<{ n: number; life: string }>[] = await Promise.all(
      [...Array(10).keys()].map((n) => renewed.request<{ n: number; life: string }>(t, { n, life: 'new' }, { timeoutMs: 5_000 })),
    );
    replies.forEach((reply, n) => expect(reply.body).toEqual({ n, life: 'new' }));
  });

  it('carries a responder failure as a RemoteError', async () => {
    const t = topic('rr-error');
    const responder = await open();
    await responder.subscribe(t, () => {
      throw new TypeError('bad input');
    });
    const requester = await open();
    const error = await requester.request(t, 1, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RemoteError);
    expect(error).toMatchObject({ errorType: 'TypeError', remoteMessage: 'bad input' });
  });

  it('refuses a reply-to header with wildcards (a protocol error as Response Topic) before sending; the connection stays up', async () => {
    const broker = await open();
    const t = topic('rr-wild');
    const error: unknown = await broker.publish(t, 1, { headers: { 'reply-to': 'replies/+' } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidHeaderError);
    expect(error).toMatchObject({ header: 'reply-to', reason: 'wildcard', retriable: false });
    expect((error as Error).message).toMatch(/wildcard \(\+ or #\) at index 8/);
    await broker.subscribe(t, () => 'still up');
    expect((await broker.request(t, 1, { timeoutMs: 5_000 })).body).toBe('still up');
  });

  it('MQTT 3.1.1: request() rejects with a ConfigurationError', async () => {
    const broker = await open({ protocolVersion: 4 });
    await expect(broker.request(topic('rr-311'), 1)).rejects.toBeInstanceOf(ConfigurationError);
  });
});
