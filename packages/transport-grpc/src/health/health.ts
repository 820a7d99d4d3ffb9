import { type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, status, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { ObservableConnection } from '@ktransport/broker';
import type { HealthOptions } from '../options.js';

/** `grpc.health.v1.HealthCheckResponse.ServingStatus`. */
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

interface HealthCheckRequest {
  service: string;
}
interface HealthCheckResponse {
  status: ServingStatus;
}
type Watcher = ServerWritableStream<HealthCheckRequest, HealthCheckResponse>;

/**
 * The state behind `grpc.health.v1.Health`. The overall status (service `''`)
 * is SERVING while the server runs and every dependency is `connected`; a named
 * service additionally needs its own dependencies. Dependencies are followed
 * through `onStateChange`, and every Watch stream gets each change of its
 * service's status. Stopping turns everything NOT_SERVING, tells the watchers,
 * then ends their streams so that they do not hold up the drain.
 */
export class Health {
  readonly #dependencies: readonly ObservableConnection[];
  readonly #services = new Map<string, readonly ObservableConnection[]>();
  readonly #watchers = new Map<Watcher, ServingStatus>();
  #unsubscribe: (() => void)[] = [];
  #serving = false;

  constructor(options: HealthOptions) {
    this.#dependencies = options.dependencies ?? [];
    this.#services.set('', []);
    for (const [name, dependencies] of Object.entries(options.services ?? {})) this.#services.set(name, dependencies);
  }

  /** Makes a served service known to Check and Watch. */
  addService(name: string): void {
    if (!this.#services.has(name)) this.#services.set(name, []);
  }

  /** The status of `service`, or undefined when no service has that name. */
  status(service: string): ServingStatus | undefined {
    const own = this.#services.get(service);
    if (own === undefined) return undefined;
    return this.#serving && this.#dependencies.every(connected) && own.every(connected) ? 'SERVING' : 'NOT_SERVING';
  }

  /** The server is listening: start following the dependencies. */
  start(): void {
    const all = new Set([...this.#dependencies, ...[...this.#services.values()].flat()]);
    this.#unsubscribe = [...all].map((connection) => connection.onStateChange(() => this.#publish()));
    this.#serving = true;
    this.#publish();
  }

  /** The server is stopping: NOT_SERVING everywhere, watchers told and their streams ended. */
  stop(): void {
    this.#serving = false;
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
    this.#publish();
    for (const watcher of [...this.#watchers.keys()]) {
      this.#watchers.delete(watcher);
      watcher.end();
    }
  }

  readonly implementation: UntypedServiceImplementation = {
    Check: (call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, callback: sendUnaryData<HealthCheckResponse>) => {
      const current = this.status(call.request.service);
      if (current === undefined) callback({ code: status.NOT_FOUND, details: `unknown service "${call.request.service}"` });
      else callback(null, { status: current });
    },
    Watch: (call: Watcher) => {
      // Per the protocol an unknown service is reported, not refused; it stays unknown (services are fixed at start).
      const current = this.status(call.request.service) ?? 'SERVICE_UNKNOWN';
      if (!this.#serving) {
        // Arrived while stopping: answer and end, so the stream cannot hold up the drain.
        call.write({ status: current });
        call.end();
        return;
      }
      this.#watchers.set(call, current);
      const forget = (): void => void this.#watchers.delete(call);
      call.on('cancelled', forget);
      call.on('close', forget);
      call.write({ status: current });
    },
  };

  #publish(): void {
    for (const [watcher, last] of this.#watchers) {
      const current = this.status(watcher.request.service) ?? 'SERVICE_UNKNOWN';
      if (current === last) continue;
      this.#watchers.set(watcher, current);
      watcher.write({ status: current });
    }
  }
}

function connected(connection: ObservableConnection): boolean {
  return connection.state === 'connected';
}
