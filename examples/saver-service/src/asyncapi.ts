// The pipeline's AsyncAPI document: `npm run asyncapi` (in this folder) writes it
// to asyncapi.yaml; test/asyncapi.test.ts fails when that file is stale.
import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type AsyncApiOptions, asyncApiYaml } from '@ktransport/asyncapi';
import { ReportRepository } from './agent/report-repository.js';
import { SaverService } from './saver/saver-service.js';

/** Where the generated document is committed. */
export const ASYNCAPI_FILE = fileURLToPath(new URL('../asyncapi.yaml', import.meta.url));

/** The brokers the demo runs on (see the README); credentials would not be copied anyway. */
const SERVERS: AsyncApiOptions['servers'] = {
  embedded: { url: 'mqtt://127.0.0.1:1885', description: 'The embedded MQTT broker the demo starts when no broker URL is configured (MQTT 3.1.1)' },
  mosquitto: { url: 'mqtt://127.0.0.1:1883', description: 'Mosquitto, MQTT 5' },
  kafka: { url: 'kafka://127.0.0.1:9092', description: 'Apache Kafka in KRaft mode' },
  rabbitmq: { url: 'amqp://127.0.0.1:5672', description: 'RabbitMQ; topics are routing keys on one topic exchange' },
  nats: { url: 'nats://127.0.0.1:4222', description: 'NATS JetStream; topics map to subjects (`/` -> `.`)' },
  redis: { url: 'redis://127.0.0.1:6379', description: 'Redis Streams' },
};

/** The agent publishes through ReportRepository, the saver receives in SaverService. */
export function saverAsyncApi(): string {
  return asyncApiYaml({
    info: {
      title: 'saver-service report pipeline',
      version: '0.1.0',
      description:
        'A gRPC agent publishes reports; a saver stores each valid report once in PostgreSQL. ' +
        'The saver joins the configured group (default `saver`) and dead-letters a report after five failed attempts.',
    },
    services: [ReportRepository, SaverService],
    servers: SERVERS,
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(ASYNCAPI_FILE, saverAsyncApi());
  console.log(`asyncapi: wrote ${ASYNCAPI_FILE}`);
}
