import { Server as GrpcJsServer, ServerCredentials, type ServerOptions, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { ConfigurationError, type Server } from '@ktransport/broker';
import { InFlight } from '@ktransport/broker/transport';
import { guard } from './call.js';
import { BindError, ShutdownTimeoutError } from './errors.js';
import { healthDefinition, HEALTH_SERVICE } from './health/definition.js';
import { Health } from './health/health.js';
import { inFlight } from './middleware/in-flight.js';
import { tracing } from './middleware/tracing.js';
import type { GrpcMiddleware, GrpcServerOptions, MethodInfo, MethodKind } from './options.js';

interface Registration {
  readonly definition: ServiceDefinition;
  readonly implementation: UntypedServiceImplementation;
}

/**
 * Serves gRPC services for an App on @grpc/grpc-js. Every call gets a SERVER
 * span (continuing the caller's trace from the metadata) and runs through the
 * middleware; `grpc.health.v1.Health` reports the state of the connections the
 * service depends on. `stop()` turns health NOT_SERVING, refuses new calls,
 * lets in-flight calls finish within `shutdownTimeoutMs` and cancels the rest.
 * A stopped server can be started again.
 */
export class GrpcServer implements Server {
  readonly name: string;
  readonly #address: string;
  readonly #credentials: ServerCredentials;
  readonly #serverOptions: ServerOptions;
  readonly #shutdownTimeoutMs: number;
  readonly #middleware: GrpcMiddleware[];
  readonly #health: Health | undefined;
  readonly #inFlight = new InFlight();
  readonly #services = new Map<string, Registration>();
  #server: GrpcJsServer | undefined;
  #port: number | undefined;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  constructor(options: GrpcServerOptions = {}) {
    this.name = options.name ?? 'grpc';
    this.#address = options.address ?? '127.0.0.1:0';
    this.#credentials = options.credentials ?? ServerCredentials.createInsecure();
    this.#serverOptions = options.serverOptions ?? {};
    this.#shutdownTimeoutMs = options.shutdownTimeoutMs ?? 10_000;
    if (!(this.#shutdownTimeoutMs >= 0)) throw new ConfigurationError(`${this.name}: shutdownTimeoutMs must be >= 0, got ${options.shutdownTimeoutMs}`);
    this.#middleware = [inFlight(this.#inFlight)];
    if (options.tracing !== false) this.#middleware.push(tracing(typeof options.tracing === 'object' ? options.tracing : {}));
    this.#middleware.push(...(options.middleware ?? []));
    this.#health = options.health === false ? undefined : new Health(typeof options.health === 'object' ? options.health : {});
    for (const { definition, implementation } of options.services ?? []) this.addService(definition, implementation);
  }

  /** The address listened on, with the actual port when `:0` was asked for; undefined unless running. */
  get address(): string | undefined {
    return this.#port === undefined ? undefined : this.#address.replace(/:0$/, `:${this.#port}`);
  }

  /** The port listened on; undefined unless running. */
  get port(): number | undefined {
    return this.#port;
  }

  /** Adds a service, served from the next start. Its name must be unique on this server. */
  addService(definition: ServiceDefinition, implementation: UntypedServiceImplementation): this {
    if (this.#starting) throw new ConfigurationError(`${this.name}: services must be added before start`);
    const service = serviceOf(definition);
    if (service === HEALTH_SERVICE && this.#health)
      throw new ConfigurationError(`${this.name}: ${HEALTH_SERVICE} is served by the health option; set health: false to serve your own`);
    if (this.#services.has(service)) throw new ConfigurationError(`${this.name}: service ${service} was already added`);
    this.#services.set(service, { definition, implementation });
    this.#health?.addService(service);
    return this;
  }

  /** Listens on the address; rejects with a BindError when it cannot. */
  start(): Promise<void> {
    if (this.#stopping)
      return this.#stopping.then(
        () => this.start(),
        () => this.start(),
      );
    this.#starting ??= this.#start().catch((error: unknown) => {
      this.#starting = undefined;
      throw error;
    });
    return this.#starting;
  }

  /** Health NOT_SERVING, then a graceful shutdown bounded by `shutdownTimeoutMs`, then a forced one. */
  stop(): Promise<void> {
    if (!this.#starting) return Promise.resolve();
    const starting = this.#starting;
    this.#stopping ??= starting
      .then(
        () => this.#stop(),
        () => undefined,
      )
      .finally(() => {
        this.#starting = undefined;
        this.#stopping = undefined;
      });
    return this.#stopping;
  }

  async #start(): Promise<void> {
    const server = new GrpcJsServer(this.#serverOptions);
    if (this.#health) server.addService(healthDefinition, this.#health.implementation);
    for (const { definition, implementation } of this.#services.values()) server.addService(definition, this.#wrap(definition, implementation));
    try {
      this.#port = await bind(server, this.#address, this.#credentials);
    } catch (error) {
      server.forceShutdown();
      const reason = error instanceof Error ? error.message : String(error);
      const inUse = /EADDRINUSE/.test(reason);
      throw new BindError(this.#address, `${this.name}: cannot listen on ${this.#address}: ${inUse ? 'address already in use' : reason}`, {
        cause: error,
        retriable: inUse,
      });
    }
    this.#server = server;
    this.#health?.start();
  }

  async #stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#health?.stop();
    const drained = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), this.#shutdownTimeoutMs)));
    try {
      if (await Promise.race([drained.then(() => false), expired])) {
        const pending = this.#inFlight.size;
        server.forceShutdown();
        throw new ShutdownTimeoutError(pending, this.#shutdownTimeoutMs);
      }
    } finally {
      clearTimeout(timer);
      this.#server = undefined;
      this.#port = undefined;
    }
  }

  /** The implementation with every handler wrapped in the middleware, the first listed outermost. */
  #wrap(definition: ServiceDefinition, implementation: UntypedServiceImplementation): UntypedServiceImplementation {
    const wrapped: UntypedServiceImplementation = {};
    for (const [key, method] of Object.entries(definition)) {
      const handler = implementation[key] ?? (method.originalName === undefined ? undefined : implementation[method.originalName]);
      // grpc-js answers UNIMPLEMENTED for a method without a handler.
      if (handler === undefined) continue;
      const info = methodInfo(method.path, kindOf(method.requestStream, method.responseStream));
      wrapped[key] = this.#middleware.reduceRight((next, middleware) => middleware(next, info), guard(info.kind, handler));
    }
    return wrapped;
  }
}

function bind(server: GrpcJsServer, address: string, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    try {
      server.bindAsync(address, credentials, (error, port) => (error ? reject(error) : resolve(port)));
    } catch (error) {
      reject(error);
    }
  });
}

function serviceOf(definition: ServiceDefinition): string {
  const services = new Set(Object.values(definition).map((method) => methodInfo(method.path, 'unary').service));
  const [service, ...others] = services;
  if (service === undefined) throw new ConfigurationError('a gRPC service definition needs at least one method');
  if (others.length > 0) throw new ConfigurationError(`a gRPC service definition must describe one service, got ${[...services].join(', ')}`);
  return service;
}

function methodInfo(path: string, kind: MethodKind): MethodInfo {
  const match = /^\/([^/]+)\/([^/]+)$/.exec(path);
  if (!match) throw new ConfigurationError(`gRPC method path "${path}" is not /package.Service/Method`);
  const [, service = '', method = ''] = match;
  return { path, service, method, kind };
}

function kindOf(requestStream: boolean, responseStream: boolean): MethodKind {
  if (requestStream) return responseStream ? 'bidi' : 'clientStream';
  return responseStream ? 'serverStream' : 'unary';
}
