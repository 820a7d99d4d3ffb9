/**
 * `@ktransport/broker/transport`: what a transport author needs and an
 * application does not. A transport is a wire (connect, send, receive as
 * deliveries, pause and resume, connection state) around these shared parts; see
 * the guide in this package's TRANSPORTS.md.
 */
export type { Delivery, EngineLoad, FlowControl } from '../engine/delivery.js';
export { DeliveryEngine, type EngineOptions, type StopResult } from '../engine/engine.js';
export { GroupPicker, keyHash } from '../engine/pick.js';
export type { YieldSlot } from '../engine/slot.js';
export { type LoadedSubscriptionParts, loadedSubscription } from '../engine/subscription.js';
export { type CommonBrokerOptions, type Consumer, MessagePipeline, type RawMessage } from '../pipeline.js';
export type { OutgoingMessage, PublishFn } from '../middleware/middleware.js';
export type { ReplyPublish } from '../middleware/reply.js';
export { RequestClient, type RequestClientOptions, type RequestWire } from '../request.js';
export { InFlight } from '../drain.js';
export { TopicTrie } from '../memory/trie.js';
export { assertFilter, assertPublishTopic, hasWildcard } from '../topic.js';
export { asBuffer } from '../codec/buffer.js';
export { type Settleable, settleable } from '../settleable.js';
export { errorText, HEADER_TEXT_MAX_BYTES, headerText, invalidTextIndex } from '../text.js';
export { isCertificateError, redactSecrets, redactUrl } from '../security.js';
