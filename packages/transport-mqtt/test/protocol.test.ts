import { ConnectionError, SubscribeError } from '@ktransport/broker';
import { MqttBroker, type MqttBrokerOptions, MqttServer, ProtocolVersionError } from '@ktransport/transport-mqtt';
import type { Packet } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Peer, type PeerScript, scriptedPeer } from './peer.js';
import { conformanceCases } from '@ktransport/broker/testing';
import { RABBIT_MQTT_PREFETCH, RabbitMq } from './rabbitmq.js';
import { open, outcome, sleep, topic, waitFor } from './helpers.js';

/**
 * Brokers that are not Mosquitto: one that refuses the protocol version, and
 * one without shared subscriptions. A `group` must never subscribe and then
 * deliver nothing, and a refused version must say which version and what to do.
 */

const quiet = { tracing: false, metrics: false, connectTimeoutMs: 5_000 } as const;

function failure(options: MqttBrokerOptions): Promise<unknown> {
  return outcome(new MqttBroker({ ...quiet, ...options }).connect());
}

describe('RabbitMQ 3.10 with its MQTT plugin (a private node)', () => {
  let rabbit: RabbitMq;
  beforeAll(async () => {
    rabbit = await RabbitMq.start();
  }, 120_000);
  afterAll(async () => {
    await rabbit?.destroy();
  }, 120_000);

  it('closes an MQTT 5 CONNECT unanswered: connect() rejects with a ProtocolVersionError that names MQTT 5 and suggests protocolVersion: 4', async () => {
    const error = await failure({ url: rabbit.url });
    expect(error).toBeInstanceOf(ProtocolVersionError);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toMatch(/MQTT 5/);
    expect((error as Error).message).toMatch(/protocolVersion: 4/);
  });

  it('works with protocolVersion: 4, where a group needs sharedSubscriptions: false ($share/... is taken as a literal filter)', async () => {
    const received = async (sharedSubscriptions: boolean): Promise<number> => {
      const broker = await open({ url: rabbit.url, protocolVersion: 4, sharedSubscriptions });
      const t = topic(`rabbit-group-${String(sharedSubscriptions)}`);
      let count = 0;
      await broker.subscribe(t, () => void count++, { group: 'savers' });
      for (let n = 0; n < 20; n++) await broker.publish(t, { n });
      await waitFor(
        () => count === 20,
        sharedSubscriptions ? 1_000 : 5_000,
        () => `${count} of 20`,
      ).catch(() => undefined);
      await sleep(200);
      return count;
    };
    expect(await received(false)).toBe(20);
    // MQTT 3.1.1 cannot tell that shared subscriptions are missing: the README says to set sharedSubscriptions: false.
    expect(await received(true)).toBe(0);
  });

  // The conformance kit's bounded-intake case, where the broker keeps to its window: acknowledgements
  // go out only after handling, so what a subscription holds never exceeds what RabbitMQ lets be
  // unacknowledged (its mqtt.prefetch). Mosquitto 2.0.11 does not keep to Receive Maximum (README).
  const bounded = conformanceCases({
    createBroker: () => new MqttBroker({ ...quiet, url: rabbit.url, protocolVersion: 4 }),
    features: { wildcards: true, groups: false, persistent: false, orderingPerKey: false, redelivery: true, intakeBound: RABBIT_MQTT_PREFETCH },
    waitMs: 10_000,
  }).filter((c) => c.name.startsWith('bounds intake'));
  for (const c of bounded) it(`conformance: ${c.name} (mqtt.prefetch ${RABBIT_MQTT_PREFETCH}, MQTT 3.1.1)`, c.run, c.timeoutMs);
});

/**
 * Protocol-level tests of the CONNACK and SUBACK handling, with a scripted MQTT
 * peer (test/peer.ts): no available broker announces "Shared Subscription
 * Available: 0" (Mosquitto always has them) or answers SUBACK 0x9E.
 */
describe('shared subscriptions the broker does not have (scripted MQTT 5 peer)', () => {
  const peers: Peer[] = [];
  afterAll(async () => {
    await Promise.all(peers.map((p) => p.close()));
  });

  async function peer(script: PeerScript): Promise<Peer> {
    const p = await scriptedPeer(script);
    peers.push(p);
    return p;
  }

  const subscribed = (received: Packet[]): string[] => received.flatMap((p) => (p.cmd === 'subscribe' ? p.subscriptions.map((s) => s.topic) : []));

  const noShared: PeerScript = {
    connack: { packet: { returnCode: 0, reasonCode: 0, sessionPresent: false, properties: { sharedSubscriptionAvailable: false } }, protocolVersion: 5 },
  };

  it('fails a group subscribe() with a SubscribeError that says to set sharedSubscriptions: false, when CONNACK says they are not available', async () => {
    const p = await peer(noShared);
    const broker = await open({ url: p.url });
    const error = await outcome(broker.subscribe('reports/+', () => undefined, { group: 'savers' }));
    expect(error).toBeInstanceOf(SubscribeError);
    expect((error as Error).message).toMatch(/sharedSubscriptions: false/);
    expect((error as Error).message).toMatch(/savers/);
    await broker.subscribe('plain/+', () => undefined); // other subscriptions are unaffected
    expect(subscribed(p.received)).toEqual(['plain/+']); // no $share/ filter was sent
  });

  it('subscribes the group to the plain filter with sharedSubscriptions: false', async () => {
    const p = await peer(noShared);
    const broker = await open({ url: p.url, sharedSubscriptions: false });
    await broker.subscribe('reports/+', () => undefined, { group: 'savers' });
    expect(subscribed(p.received)).toEqual(['reports/+']);
  });

  it('fails MqttServer.start() with that SubscribeError', async () => {
    const p = await peer(noShared);
    const server = new MqttServer({ broker: { url: p.url, ...quiet } }).subscribe('reports/+', () => undefined, { group: 'savers' });
    const error = await outcome(server.start());
    expect(error).toBeInstanceOf(SubscribeError);
    expect((error as Error).message).toMatch(/sharedSubscriptions: false/);
    await server.stop().catch(() => undefined);
  });

  it('gives the same SubscribeError when the broker refuses $share/... with SUBACK reason 0x9E', async () => {
    const p = await peer({
      connack: { packet: { returnCode: 0, reasonCode: 0, sessionPresent: false }, protocolVersion: 5 },
      grant: (filter, qos) => (filter.startsWith('$share/') ? 0x9e : qos),
    });
    const broker = await open({ url: p.url });
    const error = await outcome(broker.subscribe('reports/+', () => undefined, { group: 'savers' }));
    expect(error).toBeInstanceOf(SubscribeError);
    expect((error as Error).message).toMatch(/0x9e/);
    expect((error as Error).message).toMatch(/sharedSubscriptions: false/);
  });
});

describe('a broker that refuses the protocol version (scripted peer)', () => {
  const peers: Peer[] = [];
  afterAll(async () => {
    await Promise.all(peers.map((p) => p.close()));
  });

  for (const [what, script] of [
    ['answers an MQTT 5 CONNECT with the 3.1.1 return code 1', { connack: { packet: { returnCode: 1, sessionPresent: false }, protocolVersion: 4 } }],
    [
      'answers with MQTT 5 reason 0x84 (unsupported protocol version)',
      { connack: { packet: { reasonCode: 0x84, sessionPresent: false }, protocolVersion: 5 } },
    ],
  ] as const) {
    it(`${what}: a non-retriable ProtocolVersionError naming MQTT 5 and suggesting protocolVersion: 4`, async () => {
      const p = await scriptedPeer(script);
      peers.push(p);
      const started = Date.now();
      const error = await failure({ url: p.url });
      expect(error).toBeInstanceOf(ProtocolVersionError);
      expect((error as ProtocolVersionError).retriable).toBe(false);
      expect((error as Error).message).toMatch(/MQTT 5/);
      expect((error as Error).message).toMatch(/protocolVersion: 4/);
      expect(Date.now() - started).toBeLessThan(3_000);
    });
  }
});
