import type { Attributes, Meter, MeterProvider } from '@opentelemetry/api';
import { createNoopMeter, metrics } from '@opentelemetry/api';
import { errorType } from '../errors.js';
import type { Middleware, PublishMiddleware } from './middleware.js';

/** Options of the metrics middleware (`metricsConsumer`, `metricsPublisher`). */
export interface MetricsOptions {
  /** `messaging.system`: `mqtt`, `kafka`, `memory`. */
  system: string;
  /** Default: the global meter provider. */
  meterProvider?: MeterProvider;
}

const METER_NAME = '@ktransport/broker';
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];
const NOOP_METER: unknown = createNoopMeter().constructor;

/**
 * The API's no-op meter (no meter provider was registered when the broker was
 * made): its instruments record nothing, now or later, so measuring is skipped.
 */
function isNoop(meter: Meter): boolean {
  return meter.constructor === NOOP_METER;
}

/** Producer side: `messaging.client.sent.messages` and `messaging.client.operation.duration` (seconds). */
export function metricsPublisher(options: MetricsOptions): PublishMiddleware {
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(METER_NAME);
  const sent = meter.createCounter('messaging.client.sent.messages', {
    unit: '{message}',
    description: 'Messages a producer attempted to send',
  });
  const duration = meter.createHistogram('messaging.client.operation.duration', {
    unit: 's',
    description: 'Duration of a send operation, until the broker acknowledged it',
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  if (isNoop(meter)) return (next) => next;
  return (next) => async (message) => {
    const attributes: Attributes = {
      'messaging.system': options.system,
      'messaging.destination.name': message.topic,
      'messaging.operation.name': 'send',
      'messaging.operation.type': 'send',
    };
    const started = performance.now();
    try {
      await next(message);
    } catch (error) {
      attributes['error.type'] = errorType(error);
      throw error;
    } finally {
      duration.record((performance.now() - started) / 1000, attributes);
      sent.add(1, attributes);
    }
  };
}

/** Consumer side: `messaging.client.consumed.messages` and `messaging.process.duration` (seconds). */
export function metricsConsumer(options: MetricsOptions): Middleware {
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(METER_NAME);
  const consumed = meter.createCounter('messaging.client.consumed.messages', {
    unit: '{message}',
    description: 'Messages delivered to a handler',
  });
  const duration = meter.createHistogram('messaging.process.duration', {
    unit: 's',
    description: 'Duration of processing one message, retries included',
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  if (isNoop(meter)) return (next) => next;
  return (next) => async (message, context) => {
    const attributes: Attributes = {
      'messaging.system': options.system,
      'messaging.destination.name': message.topic,
      'messaging.operation.name': 'process',
      'messaging.operation.type': 'process',
    };
    if (context.group) attributes['messaging.consumer.group.name'] = context.group;
    consumed.add(1, attributes);
    const started = performance.now();
    try {
      await next(message, context);
    } catch (error) {
      attributes['error.type'] = errorType(error);
      throw error;
    } finally {
      duration.record((performance.now() - started) / 1000, attributes);
    }
  };
}
