import { readFileSync } from 'node:fs';
import { z } from 'zod';

/** A configuration problem found at start, with every issue spelled out. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const BROKER_URL = /^(mqtts?|wss?|kafka|amqps?|nats|tls|rediss?):\/\/[^/\s]+|^memory:$/;
const DATABASE_URL = /^(postgres(ql)?:\/\/\S+|pglite:\S*)$/;

const Config = z.object({
  broker: z
    .object({
      url: z
        .string()
        .regex(
          BROKER_URL,
          'must be mqtt://host:port, mqtts://, ws://, wss://, kafka://host:port[,host:port], amqp://user:password@host:port[/vhost], amqps://, nats://host:port, tls://, redis://host:port[/db], rediss:// or memory:',
        )
        .optional(),
      /** MQTT protocol: 5 (default) or 4 (3.1.1, for brokers without MQTT 5 such as the embedded one). */
      protocolVersion: z.union([z.literal(4), z.literal(5)]).default(5),
      /** Port of the embedded MQTT broker started when no url is given. */
      embeddedPort: z.number().int().min(0).max(65535).default(1885),
    })
    .default({ protocolVersion: 5, embeddedPort: 1885 }),
  database: z
    .object({
      url: z.string().regex(DATABASE_URL, 'must be postgres://user@host:port/db or pglite:<dir>').default('pglite:.data/saver-db'),
    })
    .default({ url: 'pglite:.data/saver-db' }),
  grpc: z
    .object({
      address: z
        .string()
        .regex(/^[\w.-]+:\d+$/, 'must be host:port')
        .default('127.0.0.1:50051'),
    })
    .default({ address: '127.0.0.1:50051' }),
  /**
   * Name of this service instance: the MQTT client id of its persistent session
   * and the Kafka client id. Two instances running at once need different names.
   */
  instance: z
    .string()
    .regex(/^[\w.-]{1,64}$/, 'letters, digits, ".", "_" and "-" only')
    .optional(),
  /** Group the saver's subscriptions join (Kafka consumer group, MQTT shared subscription). */
  group: z
    .string()
    .regex(/^[\w.-]{1,64}$/, 'letters, digits, ".", "_" and "-" only')
    .default('saver'),
});
export type Config = z.infer<typeof Config>;

/**
 * Reads the JSON config file (if any), lets environment variables override it
 * (KT_BROKER_URL, KT_MQTT_PROTOCOL_VERSION, KT_DATABASE_URL, KT_GRPC_ADDRESS,
 * KT_INSTANCE, KT_GROUP) and validates the
 * result, so that a wrong value stops the service at start with a clear reason.
 */
export function loadConfig(options: { file?: string; env?: NodeJS.ProcessEnv } = {}): Config {
  const env = options.env ?? process.env;
  const file = options.file ?? env.KT_CONFIG;
  let raw: Record<string, Record<string, unknown>> = {};
  if (file) {
    try {
      raw = JSON.parse(readFileSync(file, 'utf8')) as typeof raw;
    } catch (error) {
      throw new ConfigError(`config: cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const merged = {
    ...raw,
    broker: {
      ...raw.broker,
      ...(env.KT_BROKER_URL ? { url: env.KT_BROKER_URL } : {}),
      ...(env.KT_MQTT_PROTOCOL_VERSION ? { protocolVersion: Number(env.KT_MQTT_PROTOCOL_VERSION) } : {}),
    },
    database: { ...raw.database, ...(env.KT_DATABASE_URL ? { url: env.KT_DATABASE_URL } : {}) },
    grpc: { ...raw.grpc, ...(env.KT_GRPC_ADDRESS ? { address: env.KT_GRPC_ADDRESS } : {}) },
    ...(env.KT_INSTANCE ? { instance: env.KT_INSTANCE } : {}),
    ...(env.KT_GROUP ? { group: env.KT_GROUP } : {}),
  };
  const result = Config.safeParse(merged);
  if (!result.success) {
    const reasons = result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`config: ${reasons.join('; ')}`);
  }
  return result.data;
}
