import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { healthDefinition } from '@ktransport/transport-grpc';
import { loadReportService, type ReportClient } from '../src/proto.js';

/** The example runs from its build: `npm test` builds before the tests. */
const DIST = fileURLToPath(new URL('../dist/', import.meta.url));
const ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** A fresh database on the machine's PostgreSQL, dropped by `drop()`. */
export async function freshDatabase(): Promise<{ url: string; count(table?: string): Promise<number>; drop(): Promise<void> }> {
  const name = `kt_saver_${randomUUID().slice(0, 8)}`;
  const admin = new pg.Client(ADMIN_URL);
  try {
    await admin.connect();
  } catch (error) {
    throw new Error(`PostgreSQL is needed on 127.0.0.1:5432 (trust auth) for the example tests: ${String(error)}`);
  }
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = `postgres://postgres@127.0.0.1:5432/${name}`;
  return {
    url,
    async count(table) {
      const client = new pg.Client(url);
      await client.connect();
      try {
        const tables = table ? [table] : ['report_events', 'user_reports'];
        let total = 0;
        for (const t of tables) {
          const { rows } = await client
            .query<{ n: string; distinct_ids: string }>(`SELECT count(*) AS n, count(DISTINCT message_id) AS distinct_ids FROM ${t}`)
            .catch(() => ({ rows: [{ n: '0', distinct_ids: '0' }] }));
          const [counted] = rows;
          if (counted === undefined) throw new Error(`counting ${t} returned no row`);
          if (counted.n !== counted.distinct_ids) throw new Error(`${t} holds a report twice`);
          total += Number(counted.n);
        }
        return total;
      } finally {
        await client.end();
      }
    },
    async drop() {
      const a = new pg.Client(ADMIN_URL);
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

/** Children still running when the test process exits (a test that timed out) are killed with it. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export interface Service {
  readonly process: ChildProcess;
  readonly lines: string[];
  waitFor(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `main.js <role>` with the given KT_* environment and waits for its ready line. */
export async function startService(role: 'agent' | 'saver', env: Record<string, string>): Promise<Service> {
  const proc = spawn(process.execPath, [`${DIST}main.js`, role], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  proc.once('exit', () => running.delete(proc));
  const lines: string[] = [];
  let buffer = '';
  const onData = (chunk: string): void => {
    buffer += chunk;
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    lines.push(...parts);
  };
  proc.stdout.setEncoding('utf8').on('data', onData);
  proc.stderr.setEncoding('utf8').on('data', onData);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const service: Service = {
    process: proc,
    lines,
    async waitFor(match, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const line = lines.find(match);
        if (line) return line;
        if (proc.exitCode !== null) throw new Error(`${role} exited (${proc.exitCode}):\n${lines.join('\n')}`);
        if (Date.now() > deadline) throw new Error(`${role}: timed out; output:\n${lines.slice(-20).join('\n')}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
  await service.waitFor((line) => line.startsWith(`${role}: ready`));
  return service;
}

/** Runs the demo to completion and returns its exit code and summary line. */
export function runDemo(args: string[], timeoutMs = 180_000): Promise<{ code: number | null; summary: string; output: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [`${DIST}demo.js`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
    let output = '';
    proc.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    proc.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`demo did not finish in ${timeoutMs} ms:\n${output.slice(-3000)}`));
    }, timeoutMs);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, summary: /^demo: posted=.*$/m.exec(output)?.[0] ?? '', output });
    });
  });
}

type HealthClient = grpc.Client & {
  Check(request: { service: string }, callback: (error: grpc.ServiceError | null, reply?: { status: string }) => void): void;
};

/** The grpc.health.v1 status of the agent at `address`. */
export async function health(address: string): Promise<string> {
  const Client = grpc.makeClientConstructor(healthDefinition, 'grpc.health.v1.Health') as unknown as new (
    a: string,
    c: grpc.ChannelCredentials,
  ) => HealthClient;
  const client = new Client(address, grpc.credentials.createInsecure());
  try {
    return await new Promise((resolve, reject) =>
      client.Check({ service: '' }, (error, reply) =>
        error || !reply ? reject(error ?? new Error('the health check answered without a reply')) : resolve(reply.status),
      ),
    );
  } finally {
    client.close();
  }
}

/** Polls until `read()` returns `want`. */
export async function eventually<T>(read: () => Promise<T>, want: T, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await read().catch(() => last);
    if (last === want) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`expected ${String(want)}, last saw ${String(last)}`);
}

/** Posts an event report for each id over gRPC, `concurrency` calls in flight. */
async function post(client: ReportClient, ids: string[], concurrency = 16): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const reportId = ids[next++];
      if (reportId === undefined) return;
      await new Promise<void>((resolve, reject) =>
        client.PostReport({ eventName: 'door-open', content: `report ${reportId}`, reportId }, (error) => (error ? reject(error) : resolve())),
      );
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/**
 * Starts a saver and an agent on `broker`, posts 1,000 reports, kills the saver
 * with SIGKILL after 150 are stored, starts it again under the same instance
 * name, and waits until all 1,000 are stored. Resolves with the instance name
 * (the saver's is `<instance>-saver`), for cleanup.
 */
export async function killSaverMidRun(broker: string, db: { url: string; count(table?: string): Promise<number> }): Promise<string> {
  const instance = `kill-${randomUUID().slice(0, 6)}`;
  const address = `127.0.0.1:${20000 + Math.floor(Math.random() * 20000)}`;
  const env = { KT_BROKER_URL: broker, KT_DATABASE_URL: db.url, KT_GRPC_ADDRESS: address, KT_GROUP: instance };
  let saver: Service = await startService('saver', { ...env, KT_INSTANCE: `${instance}-saver` });
  const agent = await startService('agent', { ...env, KT_INSTANCE: `${instance}-agent` });
  const { Client } = loadReportService();
  const client = new Client(address, grpc.credentials.createInsecure());
  try {
    const runId = randomUUID().slice(0, 8);
    const ids = Array.from({ length: 1000 }, (_, i) => `${runId}-${i}`);
    const before = await db.count('report_events');
    const posting = post(client, ids);
    await eventually(async () => (await db.count('report_events')) - before >= 150, true);
    await saver.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, 500));
    saver = await startService('saver', { ...env, KT_INSTANCE: `${instance}-saver` });
    await posting;
    await eventually(async () => (await db.count('report_events')) - before, 1000, 90_000);
  } finally {
    client.close();
    await agent.stop();
    await saver.stop();
  }
  return instance;
}
