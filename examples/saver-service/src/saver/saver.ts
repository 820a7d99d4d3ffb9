import 'reflect-metadata';
import { App, BROKER, type Broker, BrokerServer } from '@ktransport/broker';
import { Container } from 'inversify';
import type { Database } from '../db/database.js';
import type { Transport } from '../transport.js';
import { DATABASE, ReportStore } from './report-store.js';
import { SaverService, SaverStats } from './saver-service.js';

export interface Saver {
  readonly app: App;
  readonly stats: SaverStats;
}

/** The saver: a broker server whose service stores every report through the repository, in consumer group `group`. */
export async function startSaver(db: Database, transport: Transport, group: string, log: (line: string) => void): Promise<Saver> {
  const container = new Container();
  container.bind<Broker>(BROKER).toConstantValue(transport.broker);
  container.bind<Database>(DATABASE).toConstantValue(db);
  container.bind(ReportStore).toSelf().inSingletonScope();
  container.bind(SaverStats).toSelf().inSingletonScope();
  container.bind(SaverService).toSelf().inSingletonScope();
  const app = new App({
    name: 'saver',
    servers: [new BrokerServer({ broker: transport.broker, name: `saver-${transport.name}`, container, services: [SaverService], group })],
    logger: log,
  });
  await app.start();
  return { app, stats: container.get(SaverStats) };
}
