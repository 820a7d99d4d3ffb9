import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { Mosquitto } from '../../../packages/transport-mqtt/test/mosquitto.js';
import { eventually, health, startService, type Service } from './support.js';

describe('agent health', () => {
  let mosquitto: Mosquitto;
  let agent: Service;
  const address = `127.0.0.1:${20000 + Math.floor(Math.random() * 20000)}`;

  beforeAll(async () => {
    mosquitto = await Mosquitto.start();
    agent = await startService('agent', { KT_BROKER_URL: mosquitto.url, KT_GRPC_ADDRESS: address, KT_INSTANCE: `health-${randomUUID().slice(0, 6)}` });
  });
  afterAll(async () => {
    await agent?.stop();
    await mosquitto?.destroy();
  });

  it('answers NOT_SERVING while the broker is unreachable and SERVING after it returns', async () => {
    await eventually(() => health(address), 'SERVING');
    await mosquitto.stop();
    await eventually(() => health(address), 'NOT_SERVING');
    await mosquitto.start();
    await eventually(() => health(address), 'SERVING');
  }, 60_000);
});
