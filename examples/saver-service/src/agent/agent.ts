import 'reflect-metadata';
import { App, BROKER, type Broker, BrokerServer } from '@ktransport/broker';
import { GrpcServer } from '@ktransport/transport-grpc';
import { Container } from 'inversify';
import type { Config } from '../config.js';
import { loadReportService } from '../proto.js';
import type { Transport } from '../transport.js';
import { ReportRepository } from './report-repository.js';
import { reportService } from './report-service.js';

export interface Agent {
  readonly app: App;
  readonly grpc: GrpcServer;
}

/**
 * The agent: ReportService over gRPC, publishing through the repository's
 * injected broker. Its health service reports NOT_SERVING while the broker is
 * unreachable. The App stops gRPC first (no new reports), then the broker.
 */
export async function startAgent(config: Config, transport: Transport, log: (line: string) => void): Promise<Agent> {
  const container = new Container();
  container.bind<Broker>(BROKER).toConstantValue(transport.broker);
  container.bind(ReportRepository).toSelf().inSingletonScope();
  const { definition } = loadReportService();
  const grpc = new GrpcServer({
    name: 'agent-grpc',
    address: config.grpc.address,
    services: [{ definition, implementation: reportService(container.get(ReportRepository)) }],
    health: { dependencies: [transport.broker] },
  });
  const app = new App({
    name: 'agent',
    servers: [new BrokerServer({ broker: transport.broker, name: `agent-${transport.name}` }), grpc],
    logger: log,
  });
  await app.start();
  return { app, grpc };
}
