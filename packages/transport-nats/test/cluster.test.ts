import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRetriable } from '@ktransport/broker';
import { sleep, waitFor } from '@ktransport/broker/testing';
import { NatsBroker } from '@ktransport/transport-nats';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { fast, unique } from './helpers.js';
import { type PrivateNats, startCluster } from './servers.js';

let cluster: PrivateNats[] = [];
const TOTAL = 10_000;

beforeAll(async () => {
  cluster = await startCluster(3);
}, 30_000);

afterAll(async () => {
  await Promise.all(cluster.map((server) => server.remove()));
}, 30_000);

describe('NatsBroker on a 3-node JetStream cluster', () => {
  it('a node killed (SIGKILL) in the middle of 10,000 publishes to a stream with 3 replicas: no acknowledged publish is lost at the consumer', async () => {
    const url = cluster.map((server) => server.url).join(',');
    const base = unique('cluster');
    const name = unique('R3');
    const broker = new NatsBroker({ ...fast, url, publishTimeoutMs: 2_000, ackWaitMs: 5_000, streams: [{ name, subjects: [`${base}.>`], replicas: 3 }] });
    // The meta leader is elected shortly after the servers start: the first connect may find no JetStream yet.
    for (let attempt = 0; ; attempt++) {
      try {
        await broker.connect();
        break;
      } catch (error) {
        if (attempt > 40) throw error;
        await sleep(250);
      }
    }
    const topic = `${base}/events`;
    try {
      const nc = await connect({ servers: cluster.map((server) => `127.0.0.1:${server.port}`) });
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info(name);
      expect(info.config.num_replicas).toBe(3);
      const leader = info.cluster?.leader;
      await nc.close();
      const consumed = new Set<number>();
      await broker.subscribe<{ n: number }>(topic, (m) => void consumed.add(m.body.n), { group: unique('g'), concurrency: 8 });
      const acked = new Set<number>();
      const failures: unknown[] = [];
      let next = 0;
      const publisher = async (): Promise<void> => {
        while (next < TOTAL) {
          const n = next++;
          for (let attempt = 0; attempt < 100; attempt++) {
            const error = await broker.publish(topic, { n }, { msgId: `${base}-${n}` }).then(
              () => undefined,
              (e: unknown) => e,
            );
            if (error === undefined) {
              acked.add(n);
              break;
            }
            failures.push(error);
            if (!isRetriable(error)) break;
            await sleep(100);
          }
        }
      };
      const publishing = Promise.all(Array.from({ length: 64 }, publisher));
      await waitFor(
        () => acked.size >= 3_000,
        20_000,
        () => `acked ${acked.size} before the kill`,
      );
      // The stream leader's node goes, as in a crash.
      const victim = cluster.find((server, i) => `n${i + 1}` === leader) ?? cluster[0];
      await victim?.stop('SIGKILL');
      await publishing;
      expect(failures.filter((e) => !isRetriable(e))).toEqual([]);
      expect(acked.size).toBe(TOTAL);
      await waitFor(
        () => [...acked].every((n) => consumed.has(n)),
        20_000,
        () => `unconsumed ${[...acked].filter((n) => !consumed.has(n)).length} of ${acked.size}`,
      );
      // Another node leads the stream now, and it holds every message (a retried publish stored once: msgId).
      const survivors = cluster.filter((server) => server !== victim).map((server) => `127.0.0.1:${server.port}`);
      const after = await connect({ servers: survivors });
      try {
        const now = await (await jetstreamManager(after)).streams.info(name);
        expect(now.cluster?.leader).not.toBe(leader);
        expect(now.state.messages).toBe(TOTAL);
      } finally {
        await after.close();
      }
    } finally {
      await broker.disconnect();
    }
  }, 60_000);
});
