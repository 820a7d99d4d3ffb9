import type { ConnectionState } from '@ktransport/broker';
import { ConnectionError } from '@ktransport/broker';
import type { IClientOptions, MqttClient } from 'mqtt';
import { connect } from 'mqtt';
import { connectFailure, ProtocolVersionError } from './errors.js';
import { DEFERRED, installPacketWriter } from './mqttjs.js';
import type { ResolvedOptions } from './options.js';

/**
 * The mqtt.js client of a broker and its observable state. The first attempt of
 * `open()` either connects or fails with a typed error (refused, unreachable,
 * timed out): it never retries forever. Once connected, mqtt.js reconnects on
 * its own and resubscribes when the session was not resumed.
 */
export class Connection {
  #state: ConnectionState = 'disconnected';
  readonly #listeners = new Set<(state: ConnectionState) => void>();
  #client: MqttClient | undefined;

  constructor(readonly options: ResolvedOptions) {}

  get state(): ConnectionState {
    return this.#state;
  }

  /** The connected client, until `close()`. */
  get client(): MqttClient | undefined {
    return this.#client;
  }

  onStateChange(listener: (state: ConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Connects; `setup` runs before the first packet so that no message is missed. */
  async open(clientOptions: IClientOptions, setup: (client: MqttClient) => void): Promise<MqttClient> {
    this.#set('connecting');
    const client = connect(this.options.url, { ...clientOptions, manualConnect: true });
    installPacketWriter(client);
    // Errors after the first connection (refused reconnects, dropped sockets) show as state changes.
    client.on('error', () => undefined);
    try {
      setup(client);
      await this.#first(client);
    } catch (error) {
      client.end(true);
      this.#set('disconnected');
      throw connectFailure(error, this.options.displayUrl, this.options.protocolVersion, this.options.secrets);
    }
    this.#client = client;
    client.on('connect', () => {
      if (this.#client === client) this.#set('connected');
    });
    client.on('close', () => {
      if (this.#client === client) this.#set('reconnecting');
    });
    this.#set('connected');
    return client;
  }

  /** Sends DISCONNECT (so no will is published) and closes; forced if the broker does not answer in time. */
  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (!client) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => client.end(true, {}, () => resolve()), this.options.connectTimeoutMs);
      const done = (): void => {
        clearTimeout(force);
        resolve();
      };
      if (client.connected) client.end(false, {}, done);
      else client.end(true, {}, done);
    });
    this.#set('closed');
  }

  #first(client: MqttClient): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => fail(new ConnectionError(`no answer from ${this.options.displayUrl} within connectTimeoutMs (${this.options.connectTimeoutMs} ms)`)),
        this.options.connectTimeoutMs,
      );
      const cleanup = (): void => {
        clearTimeout(timer);
        client.off('connect', ok);
        client.off('error', fail);
        client.off('close', closed);
      };
      function ok(): void {
        cleanup();
        resolve();
      }
      function fail(error: Error): void {
        if (error === DEFERRED) return;
        cleanup();
        reject(error);
      }
      const { displayUrl: url, protocolVersion } = this.options;
      function closed(): void {
        fail(
          protocolVersion === 5
            ? new ProtocolVersionError(url, 5, false)
            : new ConnectionError(`${url} closed the connection before answering the MQTT 3.1.1 CONNECT`),
        );
      }
      client.on('connect', ok);
      client.on('error', fail);
      client.on('close', closed);
      client.connect();
    });
  }

  #set(state: ConnectionState): void {
    if (state === this.#state) return;
    this.#state = state;
    for (const listener of [...this.#listeners]) listener(state);
  }
}
