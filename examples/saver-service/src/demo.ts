// `npm run demo`: the report pipeline end to end. Starts the saver and the agent
// as two processes, posts N reports through a real gRPC client, waits until the
// saver stored them all, stops both with SIGTERM and prints one summary line.
// With no --broker an MQTT broker runs embedded in this process; with no
// --database the saver uses an embedded PostgreSQL (PGlite) in a temp dir.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { openDatabase } from './db/database.js';
import { startEmbeddedMqtt } from './embedded-mqtt.js';
import { loadReportService, type ReportClient } from './proto.js';
import { endMqttSession } from './transport.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));
const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    broker: { type: 'string' },
    database: { type: 'string' },
    timeout: { type: 'string', default: '120' },
  },
});
const count = Number(values.count);
const err = (line: string): boolean => process.stderr.write(line);

async function main(): Promise<number> {
  if (!Number.isInteger(count) || count < 1) throw new Error(`--count must be a positive whole number, got ${values.count}`);
  const runId = randomUUID().slice(0, 8);
  const temp = mkdtempSync(join(tmpdir(), 'ktransport-demo-'));
  const embedded = values.broker ? undefined : await startEmbeddedMqtt(0);
  const env = {
    ...process.env,
    KT_BROKER_URL: embedded?.url ?? values.broker,
    ...(embedded ? { KT_MQTT_PROTOCOL_VERSION: '4' } : {}),
    KT_DATABASE_URL: values.database ?? `pglite:${join(temp, 'db')}`,
    KT_GRPC_ADDRESS: `127.0.0.1:${await freePort()}`,
  };
  const transport = values.broker ? new URL(values.broker).protocol.replace(':', '') : 'mqtt(embedded)';
  const children: ChildProcess[] = [];
  try {
    // A made-up saver instance and group per run: nothing queued by earlier runs or other
    // savers on a shared broker is mixed into this run's count.
    const saver = start('saver', { ...env, KT_INSTANCE: `demo-saver-${runId}`, KT_GROUP: `demo-${runId}` }, children);
    await saver.waitFor((line) => line.startsWith('saver: ready'));
    const agent = start('agent', { ...env, KT_INSTANCE: `demo-agent-${runId}` }, children);
    await agent.waitFor((line) => line.startsWith('agent: ready'));

    const { Client } = loadReportService();
    const client = new Client(env.KT_GRPC_ADDRESS, grpc.credentials.createInsecure());
    const posted = await post(client, runId);
    client.close();
    err('\n');

    const deadline = Date.now() + Number(values.timeout) * 1000;
    await saver.waitFor((line) => Number(/stored=(\d+)/.exec(line)?.[1] ?? -1) >= posted, deadline);
    const exits = children.map((c) => new Promise((resolve) => c.once('exit', resolve)));
    agent.process.kill('SIGTERM');
    saver.process.kill('SIGTERM');
    await Promise.all(exits);
    if (values.broker && /^(mqtts?|wss?):/.test(values.broker)) await endMqttSession(values.broker, `demo-saver-${runId}`);
    const stats = JSON.parse(/saver: stopped (\{.*\})/.exec(saver.output.join('\n'))?.[1] ?? '{"duplicates":0}') as { duplicates: number };

    const db = await openDatabase(env.KT_DATABASE_URL);
    const [row] = (
      await db.query<{ stored: string }>(
        `SELECT (SELECT count(*) FROM report_events WHERE message_id LIKE $1) + (SELECT count(*) FROM user_reports WHERE message_id LIKE $1) AS stored`,
        [`${runId}-%`],
      )
    ).rows;
    await db.close();
    const stored = Number(row?.stored ?? 0);
    const lost = posted - stored;
    console.log(
      `demo: posted=${posted} stored=${stored} duplicates=${stats.duplicates} lost=${lost} transport=${transport} db=${values.database ? 'postgres' : 'pglite(embedded)'}`,
    );
    return lost === 0 && posted === count ? 0 : 1;
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await embedded?.close();
    rmSync(temp, { recursive: true, force: true });
  }
}

/** Posts `count` reports, alternating event and user reports, 32 calls in flight. */
async function post(client: ReportClient, runId: string): Promise<number> {
  let next = 0;
  let done = 0;
  const call = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const reportId = `${runId}-${i}`;
      const cb = (error: grpc.ServiceError | null): void => (error ? reject(error) : resolve());
      if (i % 2 === 0) client.PostReport({ eventName: `event-${i}`, content: `report ${i} from the demo`, reportId }, cb);
      else client.PostUserReport({ userId: 1 + (i % 97), status: i % 3 === 0 ? 'active' : 'idle', reportId }, cb);
    });
  const worker = async (): Promise<void> => {
    while (next < count) {
      await call(next++);
      if (++done % 50 === 0 || done === count) err(`\rdemo: posted ${done}/${count}`);
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  return done;
}

interface Child {
  readonly process: ChildProcess;
  readonly output: string[];
  waitFor(match: (line: string) => boolean, deadline?: number): Promise<void>;
}

/** Starts `main.js <role>`, echoing its output with a prefix, and lets the demo wait for a line. */
function start(role: string, env: NodeJS.ProcessEnv, children: ChildProcess[]): Child {
  const proc = spawn(process.execPath, [MAIN, role], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  const output: string[] = [];
  const waiters = new Set<() => void>();
  let buffer = '';
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    const lines = buffer.split('\n');
    buffer = lines.pop() ?? '';
    for (const line of lines) {
      output.push(line);
      if (!/stored=\d+ duplicates/.test(line)) err(`  [${role}] ${line}\n`);
    }
    for (const wake of waiters) wake();
  });
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => err(`  [${role}] ${chunk}`));
  return {
    process: proc,
    output,
    waitFor: (match, deadline = Date.now() + 60_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (output.some(match)) return done(resolve);
          if (proc.exitCode !== null) return done(() => reject(new Error(`${role} exited with code ${proc.exitCode}`)));
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`${role}: timed out waiting; last line: ${output.at(-1) ?? '(none)'}`))),
          deadline - Date.now(),
        );
        const done = (fn: () => void): void => {
          clearTimeout(timer);
          waiters.delete(check);
          proc.off('exit', check);
          fn();
        };
        waiters.add(check);
        proc.on('exit', check);
        check();
      }),
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

main().then(
  (code) => (process.exitCode = code),
  (error: unknown) => {
    console.error(`demo: failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
