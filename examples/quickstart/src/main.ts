// The used-by flow on the in-memory broker: a repository publishes reports
// through an injected Broker, a service receives them with @Subscribe, a schema
// violation goes to the dead-letter topic, and an App starts and drains it all.
import 'reflect-metadata';
import { Container, inject, injectable } from 'inversify';
import { z } from 'zod';
import { App, BROKER, type Broker, BrokerServer, DEAD_LETTER_HEADER, type Message, MemoryBroker, Subscribe } from '@ktransport/broker';

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
  readonly saved: Report[] = [];
  readonly rejected: string[] = [];

  @Subscribe('report/event', { schema: Report, deadLetter: 'report/dead' })
  save(message: Message<Report>): void {
    this.saved.push(message.body);
    console.log(`saver: stored ${message.body.event} (${message.body.content})`);
  }

  @Subscribe('report/dead', { codec: 'bytes' })
  onDead(message: Message<Uint8Array>): void {
    this.rejected.push(message.headers[DEAD_LETTER_HEADER.error] ?? 'unknown reason');
    console.log(`saver: dead-lettered: ${message.headers[DEAD_LETTER_HEADER.error]}`);
  }
}

const container = new Container();
container.bind<Broker>(BROKER).toConstantValue(new MemoryBroker());
container.bind(ReportRepository).toSelf();
container.bind(SaverService).toSelf().inSingletonScope();

const broker = container.get<Broker>(BROKER);
const app = new App({
  name: 'quickstart',
  servers: [new BrokerServer({ broker, container, services: [SaverService] })],
  logger: (line) => console.log(line),
});
await app.start();

const repository = container.get(ReportRepository);
const posted = ['boot', 'login', 'logout'];
for (const event of posted) await repository.post({ event, content: `device 7 ${event}` });
await broker.publish('report/event', { event: '', content: 42 }); // violates the schema

await app.stop(); // drains: every accepted message is handled before stop resolves
const saver = container.get(SaverService);
const lost = posted.length - saver.saved.length;
console.log(`demo: posted=${posted.length + 1} stored=${saver.saved.length} dead-lettered=${saver.rejected.length} lost=${lost} transport=memory`);
process.exitCode = lost === 0 && saver.rejected.length === 1 ? 0 : 1;
