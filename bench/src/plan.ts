import type { WorkerConfig } from './common.js';

/** One (scenario, impl) measured in every round. */
export interface Variant {
  readonly scenario: string;
  readonly impl: string;
  /** Everything but the topic, which is made unique per round. */
  readonly config: Omit<WorkerConfig, 'topic' | 'mqttUrl' | 'kafkaBrokers'>;
}

/** Variants measured together: every round runs each of them once, in rotating order. */
export interface Group {
  readonly suite: WorkerConfig['suite'];
  readonly title: string;
  readonly rounds: number;
  readonly variants: readonly Variant[];
}

export interface PlanOptions {
  readonly quick: boolean;
  /** Overrides the number of rounds of every group. */
  readonly rounds?: number;
}

const KIB = 1_024;

/** What `npm run bench` (full) and `npm run bench -- --quick` measure. */
export function plan({ quick, rounds }: PlanOptions): Group[] {
  const r = (full: number, fast: number): number => rounds ?? (quick ? fast : full);
  const groups: Group[] = [];

  // MQTT end to end: ktransport, ktransport+tracing, raw mqtt.js (and, for 256 B, raw mqtt.js sending
  // ktransport's headers) and NestJS in the same rounds.
  for (const bytes of [256, 16 * KIB]) {
    for (const qos of [0, 1] as const) {
      const small = bytes === 256;
      const n = quick ? (small ? 30_000 : 5_000) : small ? 100_000 : 20_000;
      // NestJS is slower: fewer messages keep the run short (n is reported as measured).
      const nestN = quick ? (small ? 3_000 : 1_000) : small ? 20_000 : 10_000;
      const scenario = `qos${qos} ${small ? '256B' : '16KiB'}`;
      const base = { suite: 'mqtt' as const, scenario, bytes, qos, window: 1_000, idleMs: 3_000 };
      // Enough warm-up for the JIT to settle ktransport's longer code path as well as mqtt.js' (with
      // 1,000 messages of 16 KiB, a quick run measured ktransport half optimized: 127 µs per message, 62 in a full run).
      const warmup = 5_000;
      const impls = ['ktransport', 'raw', ...(small ? ['raw+headers'] : []), 'ktransport+tracing'];
      groups.push({
        suite: 'mqtt',
        title: `MQTT end to end, ${scenario}`,
        rounds: r(3, small ? 2 : 1),
        variants: [
          ...impls.map((impl) => ({ scenario, impl, config: { ...base, impl, n, warmup } })),
          { scenario, impl: 'nestjs', config: { ...base, impl: 'nestjs', n: nestN, warmup: Math.min(warmup, nestN) } },
        ],
      });
    }
  }

  // Kafka end to end on a 3-partition topic, kcat as the native-client reference.
  {
    const scenario = 'e2e 256B 3 partitions';
    const n = quick ? 20_000 : 100_000;
    const base = { suite: 'kafka' as const, scenario, bytes: 256, window: 2_000, idleMs: 10_000, warmup: quick ? 2_000 : 5_000 };
    groups.push({
      suite: 'kafka',
      title: 'Kafka end to end, 256 B, 3 partitions',
      rounds: r(3, 1),
      variants: [
        { scenario, impl: 'ktransport', config: { ...base, impl: 'ktransport', n } },
        { scenario, impl: 'raw', config: { ...base, impl: 'raw', n } },
        { scenario, impl: 'raw+headers', config: { ...base, impl: 'raw+headers', n } },
        // NestJS sends one request per emit; past about 500 in flight kafkajs degrades badly (2,000: 36 s and 1.5 GB for 2,000 messages).
        { scenario, impl: 'nestjs', config: { ...base, impl: 'nestjs', n: quick ? 2_000 : 5_000, warmup: quick ? 200 : 500, window: 500 } },
        { scenario, impl: 'kcat', config: { ...base, impl: 'kcat', n } },
      ],
    });
  }

  // RabbitMQ, NATS JetStream and Redis Streams end to end, each beside its raw client (amqplib, @nats-io/jetstream,
  // @redis/client) doing the same work: confirmed publishes with a window, one consumer acknowledging each message.
  for (const suite of ['amqp', 'nats', 'redis'] as const) {
    const scenario = 'e2e 256B';
    const n = quick ? 20_000 : 100_000;
    const base = { suite, scenario, bytes: 256, window: 1_000, idleMs: 10_000, warmup: quick ? 2_000 : 5_000 };
    const names = { amqp: 'RabbitMQ (AMQP 0.9.1)', nats: 'NATS JetStream', redis: 'Redis Streams' };
    groups.push({
      suite,
      title: `${names[suite]} end to end, 256 B`,
      rounds: r(3, 1),
      variants: ['ktransport', 'raw'].map((impl) => ({ scenario, impl, config: { ...base, impl, n } })),
    });
  }

  // The Kafka producer alone (acknowledged publishes, no consumer): where the end-to-end gap comes from.
  {
    const scenario = 'publish 256B 3 partitions';
    const n = quick ? 20_000 : 100_000;
    const base = { suite: 'kafka' as const, scenario, bytes: 256, window: 2_000, idleMs: 10_000, warmup: quick ? 2_000 : 5_000, publishOnly: true };
    groups.push({
      suite: 'kafka',
      title: 'Kafka publish only, 256 B, 3 partitions',
      rounds: r(3, 1),
      variants: ['ktransport', 'raw', 'raw+headers'].map((impl) => ({ scenario, impl, config: { ...base, impl, n } })),
    });
  }

  // Latency at a fixed rate, publish to handler.
  for (const transport of ['mqtt', 'kafka'] as const) {
    const scenario = transport === 'mqtt' ? 'mqtt qos1 1000/s' : 'kafka 1000/s';
    const base = {
      suite: 'latency' as const,
      scenario,
      bytes: 256,
      qos: 1 as const,
      rate: 1_000,
      durationMs: quick ? 3_000 : 10_000,
      n: 0,
      // For latency, the warm-up is in milliseconds at the same rate.
      warmup: 1_000,
      window: 1,
      idleMs: 5_000,
    };
    groups.push({
      suite: 'latency',
      title: `Latency, ${scenario}`,
      rounds: r(2, 1),
      variants: [
        { scenario, impl: 'ktransport', config: { ...base, impl: 'ktransport' } },
        { scenario, impl: 'raw', config: { ...base, impl: 'raw' } },
      ],
    });
  }

  // Scale: 1 and 10,000 subscriptions with + and # filters.
  for (const transport of ['memory', 'mqtt'] as const) {
    const n = transport === 'memory' ? (quick ? 100_000 : 300_000) : quick ? 20_000 : 100_000;
    const variants = [1, 10_000].map((subs) => {
      const scenario = `${transport} ${subs === 1 ? '1 subscription' : `${subs} subscriptions`}`;
      return {
        scenario,
        impl: 'ktransport',
        config: {
          suite: 'scale' as const,
          scenario,
          impl: 'ktransport',
          transport,
          subs,
          n,
          bytes: 256,
          qos: 1 as const,
          window: 1_000,
          warmup: Math.max(subs, quick ? 5_000 : 10_000),
          idleMs: 3_000,
        },
      };
    });
    groups.push({ suite: 'scale', title: `Scale, ${transport}`, rounds: r(3, 1), variants });
  }
  return groups;
}
