export { RedisBroker } from './broker.js';
export { RedisServer, type RedisServerOptions } from './server.js';
export { RedisReplyError, WrongTypeError } from './errors.js';
export { InvalidHeaderError } from './headers.js';
export type { RedisStreamEntry } from './reader.js';
export type { RedisBrokerOptions, RedisLogEntry, RedisPublishOptions, RedisSubscribeOptions } from './options.js';
