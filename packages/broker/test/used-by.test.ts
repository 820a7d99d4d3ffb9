import 'reflect-metadata';
import { Container, inject, injectable } from 'inversify';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { App, BROKER, type Broker, BrokerServer, DEAD_LETTER_HEADER, type Message, MemoryBroker, Subscribe } from '@ktransport/broker';
import { waitFor } from '@ktransport/broker/testing';

const Report = z.object({ device: z.string().min(1), celsius: z.number().min(-80).max(150) });
type Report = z.infer<typeof Report>;

@injectable()
class ReportRepository {
  constructor(@inject(BROKER) private readonly broker: Broker) {}

  save(report: Report): Promise<void> {
    return this.broker.publish('reports/temperature', report, { key: report.device });
  }
}

@injectable()
class Store {
  readonly reports: Report[] = [];
  readonly keys: (string | undefined)[] = [];
}

@injectable()
class ReportService {
  constructor(@inject(Store) private readonly store: Store) {}

  @Subscribe('reports/temperature', { schema: Report, deadLetter: 'reports/dead', group: 'savers' })
  onReport(message: Message<Report>): void {
    const report: Report = message.body;
    this.store.reports.push(report);
    this.store.keys.push(message.key);
  }
}

@injectable()
class DeadLetters {
  readonly messages: Message[] = [];

  // A transport option (MQTT qos) rides along; the memory broker ignores what it does not know.
  @Subscribe('reports/dead', { codec: 'bytes', qos: 1 })
  onDead(message: Message<Uint8Array>): void {
    this.messages.push(message);
  }
}

describe('the used-by flow: @Subscribe service, repository with an injected Broker, App', () => {
  it('delivers typed, validated bodies and dead-letters a schema violation with the reason, losing nothing', async () => {
    const container = new Container();
    container.bind<Broker>(BROKER).toConstantValue(new MemoryBroker({ tracing: false, metrics: false }));
    container.bind(Store).toSelf().inSingletonScope();
    container.bind(ReportRepository).toSelf();
    container.bind(ReportService).toSelf().inSingletonScope();
    container.bind(DeadLetters).toSelf().inSingletonScope();
    const broker = container.get<Broker>(BROKER);
    const app = new App({ servers: [new BrokerServer({ broker, container, services: [ReportService, DeadLetters] })], signals: [] });
    await app.start();

    const repository = container.get(ReportRepository);
    for (let i = 0; i < 50; i++) await repository.save({ device: `d${i}`, celsius: 20 + i / 10 });
    await broker.publish('reports/temperature', { device: 'd-bad', celsius: 'hot' });
    for (let i = 50; i < 100; i++) await repository.save({ device: `d${i}`, celsius: 20 });

    const store = container.get(Store);
    const dead = container.get(DeadLetters);
    await waitFor(
      () => store.reports.length === 100 && dead.messages.length === 1,
      2000,
      () => `${store.reports.length}/${dead.messages.length}`,
    );
    await app.stop();

    expect(new Set(store.reports.map((r) => r.device)).size).toBe(100);
    expect(store.reports[0]).toEqual({ device: 'd0', celsius: 20 });
    expect(store.keys[0]).toBe('d0');
    const [violation] = dead.messages;
    expect(JSON.parse(new TextDecoder().decode(violation?.body as Uint8Array))).toEqual({ device: 'd-bad', celsius: 'hot' });
    expect(violation?.headers[DEAD_LETTER_HEADER.originalTopic]).toBe('reports/temperature');
    expect(violation?.headers[DEAD_LETTER_HEADER.errorType]).toBe('VALIDATION_ERROR');
    expect(violation?.headers[DEAD_LETTER_HEADER.error]).toMatch(/^body of reports\/temperature does not match the schema: celsius: /);
    expect(violation?.headers[DEAD_LETTER_HEADER.group]).toBe('savers');
  });
});
