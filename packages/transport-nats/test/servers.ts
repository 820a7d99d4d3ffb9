import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@ktransport/broker/testing';

const BIN = '/usr/sbin/nats-server';

/** Ports of private brokers: the conformance kit's helpers, re-exported for this package's tests. */
export { freePort } from '@ktransport/broker/testing';

/** Options of a private server. */
export interface PrivateNatsOptions {
  /** Extra command-line arguments (credentials, cluster settings). */
  args?: string[];
  /** JetStream on (default) or off. */
  jetstream?: boolean;
  /** The client port; default a free one. */
  port?: number;
  /** Store directory (kept across restarts); default a new temporary one, removed by `remove()`. */
  storeDir?: string;
}

/**
 * A nats-server process of a test's own, with JetStream, on a free loopback
 * port and its own store directory, so that the test may stop, kill and
 * restart it. A server that does not come up fails with its output.
 */
export class PrivateNats {
  port = 0;
  #storeDir: string | undefined;
  #ownsStore = false;
  #process: ChildProcess | undefined;
  #output = '';
  readonly #options: PrivateNatsOptions;

  constructor(options: PrivateNatsOptions = {}) {
    this.#options = options;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get storeDir(): string | undefined {
    return this.#storeDir;
  }

  async start(): Promise<void> {
    if (this.#process) return;
    if (this.port === 0) this.port = this.#options.port ?? (await freePort());
    if (!this.#storeDir) {
      this.#storeDir = this.#options.storeDir ?? (await mkdtemp(join(tmpdir(), 'kt-nats-')));
      this.#ownsStore = this.#options.storeDir === undefined;
    }
    const js = this.#options.jetstream === false ? [] : ['-js', '-sd', this.#storeDir];
    const args = ['-a', '127.0.0.1', '-p', String(this.port), ...js, ...(this.#options.args ?? [])];
    this.#output = '';
    const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#process = child;
    const collect = (chunk: Buffer): void => {
      this.#output = (this.#output + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 15_000);
      const check = (): void => {
        if (/Server is ready/.test(this.#output)) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      child.stdout?.on('data', check);
      child.stderr?.on('data', check);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
      child.once('error', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!ready) {
      child.kill('SIGKILL');
      this.#process = undefined;
      throw new Error(
        `nats-server ${args.join(' ')} did not become ready (is the Debian package nats-server installed? scripts/nats.sh install):\n${this.#output}`,
      );
    }
  }

  /** Stops the server (SIGTERM, or SIGKILL to simulate a crash), keeping its store. */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.#process;
    this.#process = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** Sends a signal to the running server (SIGSTOP freezes it: connections stay open, nothing is answered; SIGCONT resumes). */
  signal(signal: 'SIGSTOP' | 'SIGCONT'): void {
    this.#process?.kill(signal);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Stops the server and removes the store directory it made. */
  async remove(): Promise<void> {
    await this.stop('SIGKILL');
    if (this.#ownsStore && this.#storeDir) await rm(this.#storeDir, { recursive: true, force: true });
  }

  get output(): string {
    return this.#output;
  }
}

/** A JetStream cluster of `size` private servers on loopback (cluster routes between them). */
export async function startCluster(size: number): Promise<PrivateNats[]> {
  const clientPorts: number[] = [];
  const clusterPorts: number[] = [];
  for (let i = 0; i < size; i++) {
    clientPorts.push(await freePort());
    clusterPorts.push(await freePort());
  }
  const name = `kt-${process.pid}-${clusterPorts[0] ?? 0}`;
  const routes = clusterPorts.map((p) => `nats://127.0.0.1:${p}`).join(',');
  const servers = clientPorts.map(
    (port, i) =>
      new PrivateNats({
        port,
        args: ['--server_name', `n${i + 1}`, '--cluster_name', name, '--cluster', `nats://127.0.0.1:${clusterPorts[i] ?? 0}`, '--routes', routes],
      }),
  );
  await Promise.all(servers.map((s) => s.start()));
  return servers;
}
