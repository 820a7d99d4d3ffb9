import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { answers, freePort } from './mosquitto.js';

/**
 * A private RabbitMQ node with the MQTT plugin, for what RabbitMQ's MQTT
 * plugin does differently from Mosquitto (3.10: MQTT 3.1.1 only, `$share/...`
 * taken as a literal filter). Its own node name, ports, data, logs, Erlang
 * cookie (HOME), config and plugin list; the machine's RabbitMQ is left alone.
 * Everything listens on 127.0.0.1. Without RabbitMQ installed the test fails
 * with the reason.
 */

const BIN = '/usr/lib/rabbitmq/bin';

/**
 * The node's `mqtt.prefetch`: QoS 1 messages it delivers to an MQTT connection
 * before acknowledgements come back (RabbitMQ's own default is 10 too).
 */
export const RABBIT_MQTT_PREFETCH = 10;
const run = promisify(execFile);

export class RabbitMq {
  #process: ChildProcess | undefined;
  #output = '';

  private constructor(
    readonly node: string,
    readonly mqttPort: number,
    readonly dir: string,
    readonly env: NodeJS.ProcessEnv,
  ) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.mqttPort}`;
  }

  static async start(): Promise<RabbitMq> {
    if (!existsSync(join(BIN, 'rabbitmq-server'))) {
      throw new Error(
        `RabbitMQ is not installed (${BIN}/rabbitmq-server missing): these tests need a RabbitMQ 3.x with the rabbitmq_mqtt plugin (Debian: apt-get install rabbitmq-server)`,
      );
    }
    const dir = await mkdtemp(join(tmpdir(), 'ktransport-rabbitmq-'));
    const [amqpPort, distPort, mqttPort] = [await freePort(), await freePort(), await freePort()];
    await mkdir(join(dir, 'home'));
    await writeFile(join(dir, 'rabbitmq-env.conf'), 'ERL_EPMD_ADDRESS=127.0.0.1\n');
    await writeFile(
      join(dir, 'rabbitmq.conf'),
      [
        `listeners.tcp.default = 127.0.0.1:${amqpPort}`,
        `mqtt.listeners.tcp.default = 127.0.0.1:${mqttPort}`,
        'mqtt.allow_anonymous = true',
        // Unacknowledged messages RabbitMQ sends an MQTT connection (its window, as Receive Maximum is on MQTT 5).
        `mqtt.prefetch = ${RABBIT_MQTT_PREFETCH}`,
        'loopback_users = none',
        '',
      ].join('\n'),
    );
    await writeFile(join(dir, 'enabled_plugins'), '[rabbitmq_mqtt].\n');
    const node = `kt-mqtt-${randomUUID().slice(0, 8)}@localhost`;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HOME: join(dir, 'home'),
      RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
      RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
      RABBITMQ_NODENAME: node,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(amqpPort),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'log'),
      RABBITMQ_PID_FILE: join(dir, 'pid'),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      RABBITMQ_SERVER_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    };
    const rabbit = new RabbitMq(node, mqttPort, dir, env);
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
    while (!(await answers(this.mqttPort, 500))) {
      if (exited || Date.now() > deadline) {
        await this.stop();
        throw new Error(`private RabbitMQ ${this.node} did not open its MQTT listener on ${this.mqttPort}: ${this.#output || '(no output)'}`);
      }
    }
  }

  /** `rabbitmqctl stop` for this node (its own cookie), then the process is gone. */
  async stop(): Promise<void> {
    const child = this.#process;
    this.#process = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    await run(join(BIN, 'rabbitmqctl'), ['-n', this.node, 'stop'], { env: this.env, timeout: 60_000 }).catch(() => undefined);
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

  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
