import { ConfigurationError, SubscribeError } from '@ktransport/broker';
import { headerText } from '@ktransport/broker/transport';
import { DiscardPolicy, type JetStreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import { describeError } from './errors.js';
import type { NatsStreamOptions } from './options.js';

/** Whether a JetStream API error says the stream does not exist. */
function isStreamNotFound(error: unknown): boolean {
  return error instanceof Error && (error.name === 'StreamNotFoundError' || /stream not found/i.test(error.message));
}

/**
 * Binds to or creates the configured streams: an existing stream is left as it
 * is; a missing one is created (`create`, the default) with file or memory
 * storage, limits retention and the given limits, or refused with a
 * ConfigurationError (`create: false`).
 */
export async function ensureStreams(jsm: JetStreamManager, streams: readonly Required<NatsStreamOptions>[]): Promise<void> {
  for (const stream of streams) {
    try {
      await jsm.streams.info(stream.name);
      continue;
    } catch (error) {
      if (!isStreamNotFound(error)) throw error;
    }
    if (!stream.create) {
      throw new ConfigurationError(`stream ${stream.name} does not exist and is configured with create: false (bind only)`);
    }
    try {
      await jsm.streams.add({
        name: stream.name,
        subjects: [...stream.subjects],
        storage: stream.storage === 'memory' ? StorageType.Memory : StorageType.File,
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
        num_replicas: stream.replicas,
        max_age: nanos(stream.maxAgeMs),
        max_msgs: stream.maxMessages,
        max_bytes: stream.maxBytes,
      });
    } catch (error) {
      // Made by another process meanwhile.
      if (
        await jsm.streams.info(stream.name).then(
          () => true,
          () => false,
        )
      )
        continue;
      throw new ConfigurationError(`cannot create stream ${stream.name}: ${describeError(error)}`, { cause: error });
    }
  }
}

/** The stream whose subjects cover a subscription's subject filter; none rejects with a SubscribeError. */
export async function streamFor(jsm: JetStreamManager, filter: string, subject: string): Promise<string> {
  try {
    return await jsm.streams.find(subject);
  } catch (error) {
    const missing = error instanceof Error && /no stream matches/i.test(error.message);
    throw new SubscribeError(
      filter,
      missing
        ? `cannot subscribe to ${headerText(filter, 200)}: no JetStream stream captures the subject "${headerText(subject, 200)}"; create a stream for it`
        : `cannot subscribe to ${headerText(filter, 200)}: looking up its stream failed: ${describeError(error)}`,
      { cause: error, retriable: !missing },
    );
  }
}
