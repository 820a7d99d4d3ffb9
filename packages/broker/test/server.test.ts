import { describe, expect, it } from 'vitest';
import { type Broker, BrokerServer, ConfigurationError, ConnectionError, MemoryBroker, SubscribeError } from '@ktransport/broker';
import { waitFor } from '@ktransport/broker/testing';

function memory(): MemoryBroker {
  return new MemoryBroker({ tracing: false, metrics: false });
}

describe('BrokerServer', () => {
  it('applies subscriptions registered before start, keyed by topic and group', async () => {
    const broker = memory();
    const got = { audit: 0, store: 0 };
    const server = new BrokerServer({ broker })
      .subscribe('reports', () => void got.audit++, { group: 'audit' })
      .subscribe('reports', () => void got.store++, { group: 'store' });
    await server.start();
    for (let i = 0; i < 5; i++) await broker.publish('reports', i);
    await waitFor(
      () => got.audit === 5 && got.store === 5,
      2000,
      () => JSON.stringify(got),
    );
    await server.stop();
  });

  it('puts subscriptions that name no group into the server group', async () => {
    const broker = memory();
    const counts = { savers: 0, audit: 0, sibling: 0 };
    const server = new BrokerServer({ broker, group: 'savers' })
      .subscribe('t', () => void counts.savers++)
      .subscribe('t', () => void counts.audit++, { group: 'audit' });
    const sibling = new BrokerServer({ broker, group: 'savers' }).subscribe('t', () => void counts.sibling++);
    await server.start();
    await sibling.start();
    for (let i = 0; i < 10; i++) await broker.publish('t', i);
    await waitFor(
      () => counts.savers + counts.sibling === 10 && counts.audit === 10,
      2000,
      () => JSON.stringify(counts),
    );
    expect(counts).toEqual({ savers: 5, audit: 10, sibling: 5 });
    await server.stop();
  });

  it('refuses a second handler for the same topic and group', () => {
    const server = new BrokerServer({ broker: memory() }).subscribe('t', () => undefined, { group: 'g' });
    expect(() => server.subscribe('t', () => undefined, { group: 'g' })).toThrow(ConfigurationError);
    expect(() => server.subscribe('t', () => undefined)).not.toThrow();
  });

  it('fails start loudly when a subscription cannot be made, and disconnects', async () => {
    const inner = memory();
    const broken: Broker = {
      system: 'memory',
      connect: () => inner.connect(),
      disconnect: () => inner.disconnect(),
      publish: (t, b, o) => inner.publish(t, b, o),
      subscribe: (topic: string) => Promise.reject(new Error(`not authorized for ${topic}`)),
    };
    const server = new BrokerServer({ broker: broken }).subscribe('secret', () => undefined);
    const error = await server.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SubscribeError);
    expect((error as Error).message).toMatch(/cannot subscribe to secret: not authorized for secret/);
    await expect(inner.publish('t', 1)).rejects.toBeInstanceOf(ConnectionError);
  });

  it('applies a subscription added while running', async () => {
    const broker = memory();
    const server = new BrokerServer({ broker, name: 'late' });
    expect(server.name).toBe('late');
    await server.start();
    let got = 0;
    server.subscribe('t', () => void got++);
    await new Promise((r) => setTimeout(r, 5));
    await broker.publish('t', 1);
    await waitFor(
      () => got === 1,
      2000,
      () => 'nothing',
    );
    await server.stop();
  });

  it('needs a container to resolve services', () => {
    expect(() => new BrokerServer({ broker: memory(), services: [class {}] })).toThrow(ConfigurationError);
  });
});
