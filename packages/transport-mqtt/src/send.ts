import { ConnectionError } from '@ktransport/broker';
import { asBuffer, type OutgoingMessage } from '@ktransport/broker/transport';
import type { IClientPublishOptions, MqttClient } from 'mqtt';
import { HeadersNotSupportedError, PayloadTooLargeError, publishFailure } from './errors.js';
import { KEY_HEADER, packetSize, remainingLength, toProperties } from './headers.js';
import { MQTT_MAX_PAYLOAD, type MqttPublishOptions, type ResolvedOptions } from './options.js';
import { clientPublishOptions } from './mqttjs.js';

/** Marks publishes the broker makes itself (dead letters): on MQTT 3.1.1 their headers are dropped, not refused. */
export const INTERNAL: unique symbol = Symbol('ktransport.mqtt.internal');

export interface SendOptions extends MqttPublishOptions {
  readonly [INTERNAL]?: true;
}

/**
 * Writes encoded messages to the connection: headers as MQTT 5 properties,
 * size limits checked before anything is sent, and a promise that settles on
 * the broker's acknowledgement (PUBACK, PUBCOMP) or once written (QoS 0).
 */
export class Sender {
  readonly #options: ResolvedOptions;
  readonly #client: () => MqttClient | undefined;
  readonly #connected: () => boolean;
  /** Publishes waiting for mqtt.js' callback, newest first: `failPending` settles them. */
  #pending: Pending | undefined;
  /** QoS 1/2 publishes awaiting their acknowledgement, and those waiting for one of them to finish. */
  #inflight = 0;
  readonly #waiting: { readonly go: () => void; readonly fail: (error: Error) => void }[] = [];

  constructor(options: ResolvedOptions, client: () => MqttClient | undefined, connected: () => boolean) {
    this.#options = options;
    this.#client = client;
    this.#connected = connected;
  }

  send(message: OutgoingMessage<SendOptions>): Promise<void> {
    const client = this.#client();
    if (!client) return Promise.reject(new ConnectionError(`cannot publish to ${message.topic}: mqtt broker is not connected`));
    let publishOptions: IClientPublishOptions;
    try {
      publishOptions = this.#prepare(message, client);
    } catch (error) {
      return Promise.reject(error);
    }
    const { topic, payload } = message;
    const qos = publishOptions.qos ?? 0;
    const bytes = asBuffer(payload);
    // A free slot is taken at once; waiting for one costs a promise only when the window is full.
    if (qos === 0 || this.#tryAcquire(client)) return this.#write(client, topic, bytes, publishOptions, qos > 0);
    return new Promise<void>((go, fail) => this.#waiting.push({ go, fail })).then(() => this.#write(client, topic, bytes, publishOptions, true));
  }

  /**
   * Checks what can be checked before anything is sent; throws typed errors.
   * Every string of the packet (topic, content type, user properties) is
   * checked here, so that no packet Mosquitto would answer by closing the
   * connection, and none with a string over 65,535 bytes, ever reaches mqtt.js.
   * Returns the options for mqtt.js.
   */
  #prepare(message: OutgoingMessage<SendOptions>, client: MqttClient): IClientPublishOptions {
    const { topic, payload, headers, options } = message;
    if (!this.#connected()) throw new ConnectionError(`cannot publish to ${topic}: the connection to ${this.#options.displayUrl} was lost; reconnecting`);
    const qos = options.qos ?? 1;
    let properties: IClientPublishOptions['properties'];
    if (this.#options.protocolVersion === 5) {
      if (message.key !== undefined) headers[KEY_HEADER] = message.key;
      properties = toProperties(headers);
    } else {
      // content-type, message-id and trace context are added by the pipeline and simply not carried on 3.1.1.
      const explicit = Object.keys(options.headers ?? {});
      if (explicit.length > 0 && !options[INTERNAL]) throw new HeadersNotSupportedError(topic, explicit);
    }
    if (payload.byteLength > this.#options.maxPayloadBytes) {
      throw new PayloadTooLargeError(topic, 'payload', payload.byteLength, this.#options.maxPayloadBytes);
    }
    const remaining = remainingLength(topic, payload.byteLength, qos, properties);
    if (remaining > MQTT_MAX_PAYLOAD) throw new PayloadTooLargeError(topic, 'packet', remaining, MQTT_MAX_PAYLOAD);
    const limit = client.serverProperties?.maximumPacketSize;
    if (limit !== undefined && packetSize(remaining) > limit) {
      throw new PayloadTooLargeError(topic, "packet (the broker's Maximum Packet Size)", packetSize(remaining), limit);
    }
    return clientPublishOptions(qos, options.retain ?? false, properties);
  }

  /**
   * Flow control: at most the broker's Receive Maximum (MQTT 5 CONNACK) QoS 1/2
   * publishes unacknowledged at once; more would be refused with "quota exceeded".
   */
  #tryAcquire(client: MqttClient): boolean {
    const limit = this.#options.protocolVersion === 5 ? (client.serverProperties?.receiveMaximum ?? 65_535) : Infinity;
    if (this.#inflight >= limit || this.#waiting.length > 0) return false;
    this.#inflight++;
    return true;
  }

  /** Hands the slot to the next waiting publish, or frees it. */
  #release(): void {
    const next = this.#waiting.shift();
    if (next) next.go();
    else this.#inflight--;
  }

  /** Publishes; settles on the acknowledgement (or once written, QoS 0). `counted` publishes give their slot back when they settle. */
  #write(client: MqttClient, topic: string, bytes: Buffer, publishOptions: IClientPublishOptions, counted: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const pending = new Pending(topic, bytes.length, counted, resolve, reject, this.#settled);
      if (this.#pending) this.#pending.previous = pending;
      pending.next = this.#pending;
      this.#pending = pending;
      try {
        client.publish(topic, bytes, publishOptions, pending.callback);
      } catch (error) {
        pending.settle(publishFailure(topic, error, bytes.length));
      }
    });
  }

  /** Ends a publish (once): out of the list, its flow-control slot back, its promise settled. */
  readonly #settled = (pending: Pending, error: Error | undefined): void => {
    this.#unlink(pending);
    if (pending.counted) this.#release();
    if (error) pending.reject(error);
    else pending.resolve();
  };

  #unlink(pending: Pending): void {
    const { previous, next } = pending;
    if (previous) previous.next = next;
    else if (this.#pending === pending) this.#pending = next;
    if (next) next.previous = previous;
    pending.previous = pending.next = undefined;
  }

  /** Rejects every publish still waiting for the broker (the connection is closed for good). */
  failPending(error: Error): void {
    for (const waiting of this.#waiting.splice(0)) waiting.fail(error);
    for (let pending = this.#pending; pending;) {
      const next = pending.next;
      pending.settle(error);
      pending = next;
    }
  }
}

/**
 * A publish waiting for mqtt.js' callback, in the sender's list (no hashing per
 * publish). It settles once: by mqtt.js' callback or by `failPending`, whichever
 * comes first.
 */
class Pending {
  previous: Pending | undefined;
  next: Pending | undefined;
  #done = false;

  constructor(
    readonly topic: string,
    /** The payload's bytes, for a PayloadTooLargeError. */
    readonly size: number,
    readonly counted: boolean,
    readonly resolve: () => void,
    readonly reject: (error: Error) => void,
    readonly onSettled: (pending: Pending, error: Error | undefined) => void,
  ) {}

  /** mqtt.js' publish callback. */
  readonly callback = (error?: Error): void => this.settle(error && publishFailure(this.topic, error, this.size));

  settle(error: Error | undefined): void {
    if (this.#done) return;
    this.#done = true;
    this.onSettled(this, error);
  }
}
