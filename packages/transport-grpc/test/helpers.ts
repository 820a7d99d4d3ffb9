import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { ConnectionState, ObservableConnection } from '@ktransport/broker';
import type { GrpcService, ServingStatus } from '@ktransport/transport-grpc';
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

export interface EchoRequest {
  text: string;
  delay_ms: number;
}
export interface EchoReply {
  text: string;
}
export interface CountRequest {
  to: number;
}
export interface HealthRequest {
  service: string;
}
export interface HealthReply {
  status: ServingStatus;
}

/** Handlers of the Echo service: grpc-js handlers, which GrpcServer also takes `async` (a rejection fails the call). */
export type EchoImplementation = {
  Echo: (call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) => void | Promise<void>;
  Count?: (call: grpc.ServerWritableStream<CountRequest, EchoReply>) => void | Promise<void>;
};

const loaderOptions = { keepCase: true, defaults: true, enums: String } as const;
const echoPackage = loadSync(fileURLToPath(new URL('./fixtures/echo.proto', import.meta.url)), loaderOptions);
export const echoDefinition = echoPackage['ktransport.test.Echo'] as grpc.ServiceDefinition;
export const echoMethod = echoDefinition['Echo'] as grpc.MethodDefinition<EchoRequest, EchoReply>;
export const countMethod = echoDefinition['Count'] as grpc.MethodDefinition<CountRequest, EchoReply>;

/** The health.proto shipped in the package, loaded as a client would. */
export const shippedHealthProto = fileURLToPath(new URL('../src/health/health.proto', import.meta.url));
const healthPackage = loadSync(shippedHealthProto, loaderOptions);
export const shippedHealthDefinition = healthPackage['grpc.health.v1.Health'] as grpc.ServiceDefinition;
export const checkMethod = shippedHealthDefinition['Check'] as grpc.MethodDefinition<HealthRequest, HealthReply>;
export const watchMethod = shippedHealthDefinition['Watch'] as grpc.MethodDefinition<HealthRequest, HealthReply>;

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Echoes the text after `delay_ms`; Count streams 1..to. */
export const echo: EchoImplementation = {
  Echo: (call, callback) => void sleep(call.request.delay_ms).then(() => callback(null, { text: call.request.text })),
  Count: (call) => {
    for (let i = 1; i <= call.request.to; i++) call.write({ text: String(i) });
    call.end();
  },
};

export function echoService(implementation: EchoImplementation = echo): GrpcService {
  return { definition: echoDefinition, implementation };
}

export function client(address: string | undefined, credentials = grpc.credentials.createInsecure(), options: grpc.ClientOptions = {}): grpc.Client {
  if (address === undefined) throw new Error('server is not listening');
  return new grpc.Client(address, credentials, options);
}

export function unary<Req, Res>(
  client: grpc.Client,
  method: grpc.MethodDefinition<Req, Res>,
  request: Req,
  metadata = new grpc.Metadata(),
  options: grpc.CallOptions = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, request, metadata, options, (error, value) =>
      error ? reject(error) : resolve(value as Res),
    );
  });
}

/** Collects a server stream; resolves with the messages when it ends with OK, rejects with its error otherwise. */
export function collect<Res>(stream: grpc.ClientReadableStream<Res>): Promise<Res[]> {
  const messages: Res[] = [];
  return new Promise((resolve, reject) => {
    stream.on('data', (message: Res) => messages.push(message));
    stream.on('error', reject);
    stream.on('end', () => resolve(messages));
  });
}

export function serverStream<Req, Res>(
  client: grpc.Client,
  method: grpc.MethodDefinition<Req, Res>,
  request: Req,
  metadata = new grpc.Metadata(),
): grpc.ClientReadableStream<Res> {
  return client.makeServerStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, request, metadata, {});
}

/** The gRPC status of a rejected call. */
export async function failure(call: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await call;
  } catch (error) {
    return error as grpc.ServiceError;
  }
  throw new Error('the call succeeded');
}

export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

export function tracer(): { provider: BasicTracerProvider; exporter: InMemorySpanExporter } {
  const exporter = new InMemorySpanExporter();
  return { exporter, provider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }) };
}

export function spanNamed(spans: readonly ReadableSpan[], name: string): ReadableSpan {
  const span = spans.find((s) => s.name === name);
  if (!span) throw new Error(`no span ${name}; have ${spans.map((s) => s.name).join(', ') || 'none'}`);
  return span;
}

/** A test double of the ObservableConnection interface: a connection whose state the test sets. */
export class FakeConnection implements ObservableConnection {
  #state: ConnectionState;
  readonly #listeners = new Set<(state: ConnectionState) => void>();

  constructor(state: ConnectionState) {
    this.#state = state;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  set(state: ConnectionState): void {
    this.#state = state;
    for (const listener of [...this.#listeners]) listener(state);
  }

  onStateChange(listener: (state: ConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }
}

/** A self-signed certificate for localhost and 127.0.0.1, made with the openssl command. */
export function selfSignedCertificate(): { key: Buffer; cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'ktransport-grpc-tls-'));
  try {
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ],
      { stdio: 'pipe' },
    );
    return { key: readFileSync(key), cert: readFileSync(cert) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
