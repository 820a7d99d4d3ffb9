export { AmqpBroker } from './broker.js';
export { AmqpServer, type AmqpServerOptions } from './server.js';
export type { AmqpBrokerOptions, AmqpPublishOptions, AmqpSubscribeOptions, AmqpTlsOptions } from './options.js';
export { InvalidHeaderError, type InvalidTextReason, InvalidTopicError, PayloadTooLargeError, UnroutableError } from './errors.js';
export { KEY_HEADER } from './headers.js';
/** The native message a received message carries in `raw` (amqplib's ConsumeMessage). */
export type { ConsumeMessage as AmqpNativeMessage } from 'amqplib';
