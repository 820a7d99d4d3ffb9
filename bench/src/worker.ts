/**
 * One measurement in its own process: `node worker.js '<WorkerConfig as JSON>'`.
 * Progress goes to stderr; the result is the last line of stdout, as JSON.
 */
import type { WorkerConfig, WorkerResult } from './common.js';
import { log } from './common.js';

type Run = (config: WorkerConfig) => Promise<WorkerResult>;

// Modules load lazily: a process holds only what its implementation needs (RSS is compared).
const RUNS: Record<WorkerConfig['suite'], Record<string, Run>> = {
  mqtt: {
    ktransport: async (c) => (await import('./mqtt.js')).ktransport(c, false),
    'ktransport+tracing': async (c) => (await import('./mqtt.js')).ktransport(c, true),
    raw: async (c) => (await import('./mqtt.js')).raw(c),
    'raw+headers': async (c) => (await import('./mqtt.js')).raw(c, true),
    nestjs: async (c) => (await import('./nest.js')).mqttNestjs(c),
  },
  kafka: {
    ktransport: async (c) => (await import('./kafka.js')).ktransport(c),
    raw: async (c) => (await import('./kafka.js')).raw(c),
    'raw+headers': async (c) => (await import('./kafka.js')).raw(c, true),
    nestjs: async (c) => (await import('./nest.js')).kafkaNestjs(c),
    kcat: async (c) => (await import('./kafka.js')).kcat(c),
  },
  amqp: {
    ktransport: async (c) => (await import('./amqp.js')).ktransport(c),
    raw: async (c) => (await import('./amqp.js')).raw(c),
  },
  nats: {
    ktransport: async (c) => (await import('./nats.js')).ktransport(c),
    raw: async (c) => (await import('./nats.js')).raw(c),
  },
  redis: {
    ktransport: async (c) => (await import('./redis.js')).ktransport(c),
    raw: async (c) => (await import('./redis.js')).raw(c),
  },
  latency: {
    'mqtt/ktransport': async (c) => (await import('./latency.js')).mqttKtransport(c),
    'mqtt/raw': async (c) => (await import('./latency.js')).mqttRaw(c),
    'kafka/ktransport': async (c) => (await import('./latency.js')).kafkaKtransport(c),
    'kafka/raw': async (c) => (await import('./latency.js')).kafkaRaw(c),
  },
  scale: {
    ktransport: async (c) => (await import('./scale.js')).scale(c),
  },
};

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
  const key = config.suite === 'latency' ? `${config.scenario.split(' ')[0]}/${config.impl}` : config.impl;
  const run = RUNS[config.suite]?.[key];
  if (!run) throw new Error(`no implementation ${key} in suite ${config.suite}`);
  const result = await run(config);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    log(`worker failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(1);
  },
);
