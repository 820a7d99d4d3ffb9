import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { freePort, portAnswers as answers } from '@ktransport/broker/testing';

/**
 * Real Redis servers for the tests: the machine's server on 127.0.0.1:6379
 * (made sure of by scripts/redis.sh) and private redis-server processes on free
 * ports with their own data directory, which a test may stop and restart. A
 * server that cannot be had fails the test with the reason.
 */

const ROOT = resolve(import.meta.dirname, '../../..');
const SCRIPT = join(ROOT, 'scripts/redis.sh');
export const SHARED_URL = 'redis://127.0.0.1:6379';
const run = promisify(execFile);

let ensured: Promise<void> | undefined;

/** Installs Redis and starts the machine's server when needed (scripts/redis.sh ensure). */
export function ensureRedis(): Promise<void> {
  ensured ??= (async () => {
    if (await answers(6379, 500)) return;
    const result = spawnSync('bash', [SCRIPT, 'ensure'], { encoding: 'utf8', timeout: 300_000 });
    if (result.status !== 0) {
      throw new Error(`Redis is not available and "bash scripts/redis.sh ensure" failed (exit ${result.status}):\n${result.stderr}`);
    }
    if (!(await answers(6379, 5_000))) throw new Error('Redis does not answer on 127.0.0.1:6379 even after scripts/redis.sh ensure');
  })();
  return ensured;
}

/** Ports of private brokers: the conformance kit's helpers, re-exported for this package's tests. */
export { freePort, portAnswers as answers } from '@ktransport/broker/testing';

export interface PrivateRedisOptions {
  /**
   * Keep the data across restarts: AOF with `appendfsync always`, so that every
   * write Redis confirmed survives (with the stock `--appendonly no` a restart
   * loses the streams). Default true.
   */
  persistent?: boolean;
  /** `--requirepass`. */
  password?: string;
  /** Listen with TLS only (`--tls-port`), with this certificate and key; clients need no certificate. */
  tls?: { readonly cert: string; readonly key: string; readonly ca: string };
}

/** A private redis-server process with its own port and data directory. */
export class PrivateRedis {
  #process: ChildProcess | undefined;
  #output = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly args: readonly string[],
  ) {}

  static async start(options: PrivateRedisOptions = {}): Promise<PrivateRedis> {
    await ensureRedis();
    const dir = await mkdtemp(join(tmpdir(), 'ktransport-redis-'));
    const port = await freePort();
    const persistent = options.persistent ?? true;
    const listen = options.tls
      ? [
          '--port',
          '0',
          '--tls-port',
          String(port),
          '--tls-cert-file',
          options.tls.cert,
          '--tls-key-file',
          options.tls.key,
          '--tls-ca-cert-file',
          options.tls.ca,
          '--tls-auth-clients',
          'no',
        ]
      : ['--port', String(port)];
    const args = [
      ...listen,
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      persistent ? 'yes' : 'no',
      ...(persistent ? ['--appendfsync', 'always'] : []),
      '--dir',
      dir,
      ...(options.password ? ['--requirepass', options.password] : []),
    ];
    const redis = new PrivateRedis(port, dir, args);
    await redis.start();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts the process again (same port and data). */
  async start(): Promise<void> {
    if (this.#process) return;
    const child = spawn('redis-server', [...this.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#process = child;
    const log = (chunk: Buffer): void => void (this.#output = (this.#output + chunk.toString()).slice(-4_000));
    child.stdout?.on('data', log);
    child.stderr?.on('data', log);
    let exited = false;
    child.once('exit', () => {
      exited = true;
      if (this.#process === child) this.#process = undefined;
    });
    const deadline = Date.now() + 10_000;
    while (!(await answers(this.port, 100))) {
      if (exited || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`private redis-server did not listen on port ${this.port}: ${this.#output || '(no output)'}`);
      }
    }
  }

  /** SIGTERM (Redis writes what it must and exits), waiting for the process to exit. */
  async stop(): Promise<void> {
    const child = this.#process;
    if (!child) return;
    this.#process = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** SIGKILL: Redis writes nothing more; what survives is what its AOF (appendfsync always) already has. */
  async kill(): Promise<void> {
    const child = this.#process;
    if (!child) return;
    this.#process = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    child.kill('SIGKILL');
    await exited;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Runs redis-cli with `args` (against 127.0.0.1:`port`) and returns its stdout. */
export async function cli(args: readonly string[], port = 6379): Promise<string> {
  await ensureRedis();
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
    timeout: 10_000,
    encoding: 'utf8',
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}
