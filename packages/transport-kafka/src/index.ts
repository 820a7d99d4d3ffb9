export { KafkaBroker } from './broker.js';
export { KafkaServer, type KafkaServerOptions } from './server.js';
export type { TopicAdmin, TopicSpec } from './admin.js';
export { AdminError, UnknownTopicError } from './errors.js';
export type {
  KafkaAcks,
  KafkaBrokerOptions,
  KafkaCompression,
  KafkaConsumerOptions,
  KafkaLogEntry,
  KafkaProducerOptions,
  KafkaPublishOptions,
  KafkaRetryOptions,
  KafkaSaslMechanism,
  KafkaSaslOptions,
  KafkaSubscribeOptions,
} from './options.js';
/** The native record a received message carries in `raw` (kafkajs' KafkaMessage). */
export type { KafkaMessage as KafkaNativeMessage } from 'kafkajs';
