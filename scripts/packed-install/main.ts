// The program a new user writes from the READMEs, type-checked under `strict` and
// NodeNext against the packed packages and run: publish -> @Subscribe handler on
// MemoryBroker, a span exported. scripts/packed-install.sh runs it.
import 'reflect-metadata';
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Container, inject, injectable } from 'inversify';
import { z } from 'zod';
import { App, BROKER, type Broker, BrokerServer, type Message, MemoryBroker, Subscribe } from '@ktransport/broker';
import { conformanceCases } from '@ktransport/broker/testing';
import { GrpcServer } from '@ktransport/transport-grpc';
import { KafkaBroker, type KafkaBrokerOptions } from '@ktransport/transport-kafka';
import { MqttBroker, type MqttBrokerOptions } from '@ktransport/transport-mqtt';
import { AmqpBroker, type AmqpBrokerOptions } from '@ktransport/transport-amqp';
import { NatsBroker, type NatsBrokerOptions } from '@ktransport/transport-nats';
import { RedisBroker, type RedisBrokerOptions } from '@ktransport/transport-redis';

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

const Report = z.object({ event: z.string().min(1), content: z.string() });
type Report = z.infer<typeof Report>;

@injectable()
class ReportRepository {
  constructor(@inject(BROKER) private readonly broker: Broker) {}
  post(report: Report): Promise<void> {
    return this.broker.publish('report/event', report);
  }
}

@injectable()
class SaverService {
  readonly saved: string[] = [];
  @Subscribe('report/event', { schema: Report, retry: { attempts: 3 }, deadLetter: 'report/dead' })
  save(message: Message<Report>): void {
    this.saved.push(message.body.event);
  }
}

// The transports' types resolve from the packed packages too (nothing connects).
const mqttOptions: MqttBrokerOptions = { url: 'mqtt://127.0.0.1:1883', protocolVersion: 5 };
const kafkaOptions: KafkaBrokerOptions = { brokers: '127.0.0.1:9092' };
const amqpOptions: AmqpBrokerOptions = { url: 'amqp://guest:guest@127.0.0.1:5672' };
const natsOptions: NatsBrokerOptions = { url: 'nats://127.0.0.1:4222', streams: [{ name: 'ORDERS', subjects: ['orders.>'] }] };
const redisOptions: RedisBrokerOptions = { url: 'redis://127.0.0.1:6379' };
const unused = [
  new MqttBroker(mqttOptions),
  new KafkaBroker(kafkaOptions),
  new AmqpBroker(amqpOptions),
  new NatsBroker(natsOptions),
  new RedisBroker(redisOptions),
  new GrpcServer({ address: '127.0.0.1:0' }),
];
if (typeof conformanceCases !== 'function' || unused.length !== 6) throw new Error('exports missing');

const container = new Container();
container.bind<Broker>(BROKER).toConstantValue(new MemoryBroker({ tracing: { tracerProvider: provider } }));
container.bind(ReportRepository).toSelf();
container.bind(SaverService).toSelf().inSingletonScope();
const app = new App({ servers: [new BrokerServer({ broker: container.get<Broker>(BROKER), container, services: [SaverService] })], signals: [] });
await app.start();
await container.get(ReportRepository).post({ event: 'boot', content: 'device 7' });
await app.stop();

const saved = container.get(SaverService).saved;
const spans = exporter
  .getFinishedSpans()
  .map((span) => span.name)
  .sort();
if (saved.join() !== 'boot' || spans.join() !== 'process report/event,send report/event') {
  throw new Error(`unexpected: saved=${saved.join()} spans=${spans.join()}`);
}
console.log(`packed-install: node ${process.versions.node}: handled ${saved.join()}, spans ${spans.join(' | ')}`);
