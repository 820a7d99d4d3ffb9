// Runs a service of the report pipeline: `main.js agent`, `main.js saver`, or
// `main.js all` (both in one process, which also makes `memory:` usable).
// Configuration: --config file.json and KT_* environment variables (see config.ts).
import { parseArgs } from 'node:util';
import { startAgent } from './agent/agent.js';
import { ConfigError, loadConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { startSaver } from './saver/saver.js';
import { openTransport } from './transport.js';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { config: { type: 'string' } } });
const role = positionals[0] ?? 'all';
const log = (line: string): void => console.log(line);

async function main(): Promise<void> {
  if (!['agent', 'saver', 'all'].includes(role)) throw new ConfigError(`unknown role "${role}": use agent, saver or all`);
  const config = loadConfig(values.config ? { file: values.config } : {});
  const transport = await openTransport(config, role);
  const db = role === 'agent' ? undefined : await openDatabase(config.database.url);
  try {
    const saver = db ? await startSaver(db, transport, config.group, log) : undefined;
    const agent = role === 'saver' ? undefined : await startAgent(config, transport, log);
    log(`${role}: ready transport=${transport.name}${db ? ` db=${db.kind}` : ''}${agent ? ` grpc=${agent.grpc.address}` : ''}`);
    const progress = saver ? reportProgress(saver.stats) : undefined;
    // Each App stops itself on SIGINT/SIGTERM and drains.
    await Promise.all([agent?.app.stopped, saver?.app.stopped]);
    clearInterval(progress);
    if (saver) log(`saver: stopped ${JSON.stringify({ stored: saver.stats.stored, duplicates: saver.stats.duplicates })}`);
  } finally {
    await db?.close();
    await transport.close();
  }
}

/** A line whenever the saver's counts changed, at most twice a second (the demo waits on it). */
function reportProgress(stats: { stored: number; duplicates: number }): NodeJS.Timeout {
  let last = '';
  const timer = setInterval(() => {
    const line = `saver: stored=${stats.stored} duplicates=${stats.duplicates}`;
    if (line !== last) log((last = line));
  }, 500);
  return timer.unref();
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exitCode = 1;
});
