import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '@ktransport/cli';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The repository root. */
export const ROOT = resolve(HERE, '../../..');
const PACKAGE = resolve(HERE, '..');
/** The binary as npm links it. */
export const BIN = join(PACKAGE, 'bin/ktransport.js');

export const MQTT_URL = 'mqtt://127.0.0.1:1883';
export const KAFKA_URL = 'kafka://127.0.0.1:9092';
export const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';
export const NATS_URL = 'nats://127.0.0.1:4222';
export const REDIS_URL = 'redis://127.0.0.1:6379';

/** A name no other test or run uses, valid as a topic level on every transport, a NATS stream and a group. */
export function unique(name: string): string {
  return `ktcli-${name}-${randomUUID().slice(0, 8)}`;
}

/** Runs `bash scripts/<script> <args>`; a broker that cannot be had fails the test with the script's output. */
export function script(file: string, ...args: string[]): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    execFile('bash', [join(ROOT, 'scripts', file), ...args], { timeout: 150_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`bash scripts/${file} ${args.join(' ')} failed: ${error.message}\n${stderr}${stdout}`));
      else resolvePromise();
    });
  });
}

/** Makes sure every broker the tests use answers (starting Kafka when needed). */
export async function ensureBrokers(): Promise<void> {
  await Promise.all([
    script('mosquitto.sh', 'ensure'),
    script('rabbitmq.sh', 'ensure'),
    script('nats.sh', 'ensure'),
    script('redis.sh', 'ensure'),
    script('kafka.sh', 'start'),
  ]);
}

/** Fails with the command to run when dist/ is older than src/ (the child-process tests run the built binary). */
export function assertBuilt(): void {
  const newest = (dir: string, ext: string): number =>
    Math.max(
      0,
      ...readdirSync(join(PACKAGE, dir))
        .filter((f) => f.endsWith(ext))
        .map((f) => statSync(join(PACKAGE, dir, f)).mtimeMs),
    );
  if (newest('dist', '.js') < newest('src', '.ts')) {
    throw new Error('packages/cli/dist is older than packages/cli/src: run `bash scripts/exec.sh tsc -b packages/cli` first');
  }
}

/** What a finished command printed and its exit status. */
export interface Outcome {
  readonly code: number | null;
  readonly signal?: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** A running `ktransport` child process. */
export interface Running {
  /** Resolves once stderr contains `text`; rejects when the process ended before. */
  waitFor(text: string, timeoutMs?: number): Promise<void>;
  readonly done: Promise<Outcome>;
  kill(signal: NodeJS.Signals): void;
  stdoutBytes(): Buffer;
}

/** Starts the real binary as a child process. */
export function start(args: readonly string[], options: { stdin?: string | Buffer; env?: Record<string, string>; cwd?: string } = {}): Running {
  const started = Date.now();
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8');
    for (const waiter of waiters) waiter();
  });
  if (options.stdin !== undefined) child.stdin.end(options.stdin);
  else child.stdin.end();
  const done = new Promise<Outcome>((resolvePromise) => {
    child.on('close', (code, signal) => {
      resolvePromise({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: err, ms: Date.now() - started });
      for (const waiter of waiters) waiter();
    });
  });
  let ended = false;
  void done.then(() => (ended = true));
  return {
    done,
    kill: (signal) => child.kill(signal),
    stdoutBytes: () => Buffer.concat(out),
    waitFor(text, timeoutMs = 20_000) {
      return new Promise<void>((resolvePromise, reject) => {
        const timer = setTimeout(() => finish(new Error(`no "${text}" on stderr within ${timeoutMs} ms; stderr: ${err}`)), timeoutMs);
        const check = (): void => {
          if (err.includes(text)) finish();
          else if (ended) finish(new Error(`the process ended before "${text}"; stderr: ${err}`));
        };
        function finish(error?: Error): void {
          clearTimeout(timer);
          waiters.delete(check);
          if (error) reject(error);
          else resolvePromise();
        }
        waiters.add(check);
        check();
      });
    },
  };
}

/** Runs the real binary to its end. */
export function cli(args: readonly string[], options: { stdin?: string | Buffer; env?: Record<string, string>; cwd?: string } = {}): Promise<Outcome> {
  return start(args, options).done;
}

/** Runs a command in this process through the exported `run`. */
export async function runHere(args: readonly string[], options: { stdin?: string; env?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Outcome> {
  const started = Date.now();
  let stdout = '';
  let stderr = '';
  const code = await run(args, {
    stdout: { write: (t: string) => (stdout += t) },
    stderr: { write: (t: string) => (stderr += t) },
    ...(options.stdin === undefined ? {} : { stdin: [Buffer.from(options.stdin)] }),
    env: options.env ?? {},
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return { code, stdout, stderr, ms: Date.now() - started };
}

/** The JSON lines of a `tail --json` output. */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Runs a program to its end (mosquitto_pub, kcat, redis-cli). */
export function tool(file: string, args: readonly string[], input?: string | Buffer, timeoutMs = 15_000): Promise<{ stdout: Buffer; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(file, [...args], { timeout: timeoutMs, encoding: 'buffer' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')} failed: ${error.message}\n${stderr.toString()}`));
      else resolvePromise({ stdout, stderr: stderr.toString() });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Deletes a JetStream stream with a request on a plain NATS connection (the CLI leaves the streams it created). */
export function deleteNatsStream(name: string): Promise<void> {
  return new Promise((resolvePromise) => {
    const socket = connect(4222, '127.0.0.1');
    let seen = '';
    let sent = false;
    const timer = setTimeout(() => socket.destroy(), 3_000);
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1');
      if (!sent && seen.includes('INFO')) {
        sent = true;
        socket.write(`CONNECT {"verbose":false}\r\nSUB _INBOX.ktcli 1\r\nPUB $JS.API.STREAM.DELETE.${name} _INBOX.ktcli 0\r\n\r\n`);
      }
      if (seen.includes('MSG _INBOX.ktcli')) socket.end();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolvePromise();
    });
  });
}
