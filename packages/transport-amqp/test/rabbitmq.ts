import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, portAnswers as answers } from '@ktransport/broker/testing';

/**
 * A private RabbitMQ node for the tests that stop, restart or reconfigure a
 * broker (the same approach as the MQTT package's test/rabbitmq.ts): its own
 * node name, ports, data, logs, Erlang cookie (HOME) and config; the machine's
 * RabbitMQ is left alone. Everything listens on 127.0.0.1. Without RabbitMQ
 * installed the test fails with the reason. Starting one takes several seconds:
 * a test file starts one at most and shares it.
 */

const BIN = '/usr/lib/rabbitmq/bin';
const run = promisify(execFile);

/** Ports of private brokers: the conformance kit's helpers, re-exported for this package's tests. */
export { freePort, portAnswers as answers } from '@ktransport/broker/testing';

export interface RabbitMqOptions {
  /** Extra lines of rabbitmq.conf (TLS listeners, limits, users). */
  readonly config?: (dir: string) => string[];
}

export class RabbitMq {
  #process: ChildProcess | undefined;
  #output = '';

  private constructor(
    readonly node: string,
    readonly port: number,
    readonly dir: string,
    readonly env: NodeJS.ProcessEnv,
  ) {}

  /** `amqp://guest:guest@127.0.0.1:{port}` (guest may log in over loopback here). */
  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  static async start(options: RabbitMqOptions = {}): Promise<RabbitMq> {
    if (!existsSync(join(BIN, 'rabbitmq-server'))) {
      throw new Error(`RabbitMQ is not installed (${BIN}/rabbitmq-server missing): run scripts/rabbitmq.sh install (Debian: apt-get install rabbitmq-server)`);
    }
    const dir = await mkdtemp(join(tmpdir(), 'ktransport-amqp-rabbitmq-'));
    const [port, distPort] = [await freePort(), await freePort()];
    await mkdir(join(dir, 'home'));
    await writeFile(join(dir, 'rabbitmq-env.conf'), 'ERL_EPMD_ADDRESS=127.0.0.1\n');
    await writeFile(
      join(dir, 'rabbitmq.conf'),
      [`listeners.tcp.default = 127.0.0.1:${port}`, 'loopback_users = none', ...(options.config?.(dir) ?? []), ''].join('\n'),
    );
    await writeFile(join(dir, 'enabled_plugins'), '[].\n');
    const node = `kt-amqp-${randomUUID().slice(0, 8)}@localhost`;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HOME: join(dir, 'home'),
      RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
      RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
      RABBITMQ_NODENAME: node,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'log'),
      RABBITMQ_PID_FILE: join(dir, 'pid'),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      RABBITMQ_SERVER_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    };
    const rabbit = new RabbitMq(node, port, dir, env);
    await rabbit.#start();
    return rabbit;
  }

  async #start(): Promise<void> {
    const child = spawn(join(BIN, 'rabbitmq-server'), [], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#process = child;
    const log = (chunk: Buffer): void => void (this.#output = (this.#output + chunk.toString()).slice(-4_000));
    child.stdout?.on('data', log);
    child.stderr?.on('data', log);
    let exited = false;
    child.once('exit', () => (exited = true));
    const deadline = Date.now() + 90_000;
    while (!(await answers(this.port, 500))) {
      if (exited || Date.now() > deadline) {
        await this.stop();
        throw new Error(`private RabbitMQ ${this.node} did not open its AMQP listener on ${this.port}: ${this.#output || '(no output)'}`);
      }
    }
  }

  /** `rabbitmqctl` for this node (its own cookie). */
  async ctl(...args: string[]): Promise<string> {
    const { stdout } = await run(join(BIN, 'rabbitmqctl'), ['-n', this.node, ...args], { env: this.env, timeout: 60_000 });
    return stdout;
  }

  /** `rabbitmqctl stop` for this node, then the process is gone. */
  async stop(): Promise<void> {
    const child = this.#process;
    this.#process = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    await this.ctl('stop').catch(() => undefined);
    const timer = setTimeout(() => {
      // The script's Erlang VM is its child: end it by the pid file it wrote, then the script.
      void readFile(join(this.dir, 'pid'), 'utf8')
        .then((pid) => process.kill(Number(pid.trim()), 'SIGKILL'))
        .catch(() => undefined);
      child.kill('SIGKILL');
    }, 30_000);
    await exited;
    clearTimeout(timer);
  }

  /** Stops and starts the node on the same ports, keeping its data (durable queues, persistent messages). */
  async restart(): Promise<void> {
    await this.stop();
    await this.#start();
  }

  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
