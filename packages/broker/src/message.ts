/** Message headers as they travel on the wire: MQTT user properties, Kafka headers. */
export type Headers = Record<string, string>;

/**
 * A message as a handler sees it. `body` is the decoded (and, with a schema,
 * validated) payload; transport metadata stays in native fields and headers.
 */
export interface Message<T = unknown> {
  /** The concrete topic the message was published to (never the wildcard filter). */
  readonly topic: string;
  readonly body: T;
  readonly headers: Headers;
  /** Record key (Kafka) used for partitioning and per-key order. */
  readonly key?: string;
  /** Transport message id, when the transport has one. */
  readonly id?: string;
  /** Milliseconds since the epoch, when the transport reports it. */
  readonly timestamp?: number;
  /** Partition the message was read from (Kafka). */
  readonly partition?: number;
  /** Offset within the partition (Kafka), as a decimal string. */
  readonly offset?: string;
  /** The transport's native message, an escape hatch for transport-specific fields. */
  readonly raw?: unknown;
}

/** Well-known header names used by the core. */
export const HEADER = {
  contentType: 'content-type',
  traceparent: 'traceparent',
  tracestate: 'tracestate',
  messageId: 'message-id',
} as const;
