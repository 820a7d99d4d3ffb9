export { MqttBroker } from './broker.js';
export { MqttServer, type MqttServerOptions } from './server.js';
export type { MqttBrokerOptions, MqttPublishOptions, MqttSubscribeOptions, MqttTlsOptions, MqttWill, QoS } from './options.js';
export {
  HeadersNotSupportedError,
  InvalidHeaderError,
  type InvalidTextReason,
  InvalidTopicError,
  PayloadTooLargeError,
  ProtocolVersionError,
} from './errors.js';
export { KEY_HEADER } from './headers.js';
