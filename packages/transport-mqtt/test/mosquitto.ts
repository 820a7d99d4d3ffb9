import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { freePort, portAnswers as answers } from '@ktransport/broker/testing';

/**
 * Real Mosquitto brokers for the tests: the shared instance on 127.0.0.1:1883
 * (made sure of by scripts/mosquitto.sh) and private instances on free ports
 * with their own config and data directory, which a test may stop, restart or
 * reconfigure. A broker that cannot be had fails the test with the reason.
 */

const ROOT = resolve(import.meta.dirname, '../../..');
const SCRIPT = join(ROOT, 'scripts/mosquitto.sh');
export const SHARED_URL = 'mqtt://127.0.0.1:1883';
const run = promisify(execFile);

let ensured: Promise<void> | undefined;

/** Installs Mosquitto and starts the shared instance when needed (scripts/mosquitto.sh ensure). */
export function ensureMosquitto(): Promise<void> {
  ensured ??= (async () => {
    if (binary() && (await answers(1883, 500))) return;
    const result = spawnSync('bash', [SCRIPT, 'ensure'], { encoding: 'utf8', timeout: 300_000 });
    if (result.status !== 0) {
      throw new Error(`Mosquitto is not available and "bash scripts/mosquitto.sh ensure" failed (exit ${result.status}):\n${result.stderr}`);
    }
    if (!(await answers(1883, 5_000))) throw new Error('Mosquitto does not answer on 127.0.0.1:1883 even after scripts/mosquitto.sh ensure');
  })();
  return ensured;
}

function binary(): string | undefined {
  for (const candidate of ['/usr/sbin/mosquitto', '/usr/local/sbin/mosquitto', '/usr/bin/mosquitto']) if (existsSync(candidate)) return candidate;
  return undefined;
}

/** Ports of private brokers: the conformance kit's helpers, re-exported for this package's tests. */
export { freePort, portAnswers as answers } from '@ktransport/broker/testing';

export interface MosquittoOptions {
  /** Extra lines for the listener (cafile, certfile, require_certificate, ...). */
  listener?: string[];
  /** Several listeners, each on its own free port (`ports[i]`), with their extra lines; overrides `listener`. */
  listeners?: string[][];
  /** Extra global lines (password_file, max_packet_size, ...). Default: anonymous access. */
  global?: string[];
  /** Keep sessions and messages across restarts (persistence true). Default true. */
  persistence?: boolean;
  /**
   * Mosquitto's own defaults for every limit (max_inflight_messages 20,
   * max_queued_messages 1000, ...), as a user who installed the package has it.
   * Default false: the tests' instances queue up to 100,000 messages per client.
   */
  stock?: boolean;
}

/** A private Mosquitto process with its own port, config and data directory. */
export class Mosquitto {
  #process: ChildProcess | undefined;
  #output = '';

  private constructor(
    readonly ports: number[],
    readonly dir: string,
  ) {}

  /** The first listener's port. */
  get port(): number {
    const [first] = this.ports;
    if (first === undefined) throw new Error('this Mosquitto has no listener');
    return first;
  }

  /** Starts an instance and waits until it accepts connections. */
  static async start(options: MosquittoOptions = {}): Promise<Mosquitto> {
    await ensureMosquitto();
    const dir = await mkdtemp(join(tmpdir(), 'ktransport-mosquitto-'));
    const listeners = options.listeners ?? [options.listener ?? []];
    const ports: number[] = [];
    // freePort() can hand out the same port twice (it is free again once probed): listeners need distinct ones.
    for (let tries = 0; ports.length < listeners.length && tries < 100; tries++) {
      const port = await freePort();
      if (!ports.includes(port)) ports.push(port);
    }
    const broker = new Mosquitto(ports, dir);
    const global = options.global ?? ['allow_anonymous true'];
    const config = [
      `user ${userInfo().username}`,
      `persistence ${options.persistence === false ? 'false' : 'true'}`,
      `persistence_location ${dir}/`,
      'autosave_interval 0',
      ...(options.stock ? [] : ['max_queued_messages 100000']),
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      ...global,
      ...listeners.flatMap((lines, i) => [`listener ${ports[i]} 127.0.0.1`, ...lines]),
      '',
    ].join('\n');
    await writeFile(join(dir, 'mosquitto.conf'), config);
    await broker.start();
    return broker;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Starts the process again (same port, config and data). */
  async start(): Promise<void> {
    if (this.#process) return;
    const path = binary();
    if (!path) throw new Error('mosquitto binary not found after scripts/mosquitto.sh ensure');
    const child = spawn(path, ['-c', join(this.dir, 'mosquitto.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
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
    for (const port of this.ports) {
      while (!(await answers(port, 100))) {
        if (exited || Date.now() > deadline) {
          child.kill('SIGKILL');
          throw new Error(`private mosquitto did not open its listener on port ${port}: ${this.#output || '(no output)'}`);
        }
      }
    }
  }

  /** SIGTERM (Mosquitto saves its persistence file), waiting for the process to exit. */
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

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Stops the process and removes its directory. */
  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }

  async file(name: string): Promise<string> {
    return readFile(join(this.dir, name), 'utf8');
  }
}

/** Runs a Mosquitto command line tool (mosquitto_pub, mosquitto_passwd, ...) and returns its stdout. */
export async function tool(name: string, args: string[], timeoutMs = 10_000): Promise<string> {
  await ensureMosquitto();
  const { stdout } = await run(name, args, { timeout: timeoutMs, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}
