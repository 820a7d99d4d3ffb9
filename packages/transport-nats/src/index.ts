export { NatsBroker } from './broker.js';
export { NatsServer, type NatsServerOptions } from './server.js';
export { InvalidHeaderError, InvalidTopicError, NoStreamError, PayloadTooLargeError } from './errors.js';
export type { NatsBrokerOptions, NatsDeliverPolicy, NatsPublishOptions, NatsStreamOptions, NatsSubscribeOptions, NatsTlsOptions } from './options.js';
/** The native message a received message carries in `raw` (nats.js' JsMsg). */
export type { JsMsg as NatsNativeMessage } from '@nats-io/jetstream';
