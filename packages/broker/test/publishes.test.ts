import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type Broker, MemoryBroker, type Message, Publishes, publicationsOf, Subscribe, subscriptionsOf } from '@ktransport/broker';

const Report = z.object({ id: z.string() });

class Repository {
  readonly calls: string[] = [];
  constructor(private readonly broker: Broker) {}

  @Publishes('report/event', { schema: Report, summary: 'A report was posted' })
  async post(id: string): Promise<string> {
    this.calls.push(id);
    await this.broker.publish('report/event', { id });
    return `sent ${id}`;
  }

  @Publishes('audit/a')
  @Publishes('audit/b', { codec: 'text' })
  audit(text: string): string {
    return text.toUpperCase();
  }

  plain(): number {
    return 1;
  }
}

class Extended extends Repository {
  @Publishes('extra')
  extra(): void {}
}

describe('@Publishes', () => {
  it('records the topic, options and method of each declaration', () => {
    const found = publicationsOf(new Repository(new MemoryBroker()));
    expect(found.map((d) => [d.topic, d.method, d.options])).toEqual([
      ['report/event', 'post', { schema: Report, summary: 'A report was posted' }],
      ['audit/b', 'audit', { codec: 'text' }],
      ['audit/a', 'audit', {}],
    ]);
  });

  it('reads the classes an instance extends and works on a bare prototype', () => {
    const topics = publicationsOf(Object.create(Extended.prototype) as object).map((d) => d.topic);
    expect(topics.sort()).toEqual(['audit/a', 'audit/b', 'extra', 'report/event']);
  });

  it('leaves the method doing exactly what it did', async () => {
    const broker = new MemoryBroker({ tracing: false, metrics: false });
    await broker.connect();
    const received: unknown[] = [];
    await broker.subscribe('report/event', (message: Message) => void received.push(message.body));
    const repository = new Repository(broker);
    await expect(repository.post('r1')).resolves.toBe('sent r1');
    expect(repository.audit('x')).toBe('X');
    expect(repository.calls).toEqual(['r1']);
    expect(received).toEqual([{ id: 'r1' }]);
    expect(Object.getOwnPropertyDescriptor(Repository.prototype, 'post')?.writable).toBe(true);
    expect(repository.plain()).toBe(1);
    await broker.disconnect();
  });

  it('is not a subscription and a class without it has none', () => {
    expect(subscriptionsOf(new Repository(new MemoryBroker()))).toEqual([]);
    class Service {
      @Subscribe('x')
      on(): void {}
    }
    expect(publicationsOf(new Service())).toEqual([]);
  });
});
