/**
 * `npm run bench [-- --quick] [--only=mqtt,kafka,amqp,nats,redis,latency,scale] [--rounds=N] [--results=FILE]`
 *
 * Runs every group of the plan: each round runs every implementation once, in
 * its own child process, in rotating order, on a topic of its own. Progress
 * goes to stderr; each measurement is one JSON line on stdout (`stat: "round"`),
 * followed by the medians (`stat: "median"`); bench/RESULTS.md is rewritten.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkerConfig, WorkerResult } from './common.js';
import { log } from './common.js';
import { type Group, plan, type Variant } from './plan.js';
import { type Measurement, median, writeResults } from './results.js';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const found = args.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  return found === undefined ? undefined : (found.split('=')[1] ?? '');
};
const quick = flag('quick') !== undefined;
const only = flag('only')?.split(',').filter(Boolean);
const roundsFlag = flag('rounds');
/** Development filters: `--impl=ktransport,raw`, `--scenario=qos1` (substring). */
const implFilter = flag('impl')?.split(',').filter(Boolean);
const scenarioFilter = flag('scenario');
const resultsPath = flag('results') ?? join(here, '..', 'RESULTS.md');
const mqttUrl = process.env.BENCH_MQTT_URL ?? 'mqtt://127.0.0.1:1885';
const kafkaBrokers = process.env.BENCH_KAFKA_BROKERS ?? '127.0.0.1:9092';
const CHILD_TIMEOUT_MS = 180_000;

function runWorker(config: WorkerConfig): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...(process.env.BENCH_NODE_OPTIONS?.split(' ').filter(Boolean) ?? []), join(here, 'worker.js'), JSON.stringify(config)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      if (err.length > 20_000) err = err.slice(-10_000);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      if (code === 0 && last.startsWith('{')) {
        resolve(JSON.parse(last) as WorkerResult);
        return;
      }
      reject(new Error(`${config.suite}/${config.scenario}/${config.impl} exited with ${signal ?? code}: ${err.trim().split('\n').slice(-8).join('\n')}`));
    });
  });
}

function topicFor(group: Group, variant: Variant, round: number): string {
  const id = randomUUID().slice(0, 8);
  const slug = `${variant.impl}-r${round}-${id}`.replace(/[^a-zA-Z0-9-]/g, '-');
  return group.suite === 'kafka' || variant.scenario.startsWith('kafka') ? `bench.${slug}` : `bench/${slug}`;
}

function kcatAvailable(): boolean {
  return spawnSync('kcat', ['-V'], { stdio: 'ignore' }).status === 0;
}

async function main(): Promise<void> {
  const started = Date.now();
  const loadAtStart = os.loadavg();
  const groups = plan({ quick, ...(roundsFlag ? { rounds: Number(roundsFlag) } : {}) }).filter((g) => !only || only.includes(g.suite));
  const hasKcat = kcatAvailable();
  const measurements: Measurement[] = [];
  const failures: string[] = [];
  log(`bench: ${quick ? 'quick' : 'full'} run of ${groups.length} groups (mqtt ${mqttUrl}, kafka ${kafkaBrokers})`);
  for (const group of groups) {
    const variants = group.variants.filter((v) => {
      if (implFilter && !implFilter.includes(v.impl)) return false;
      if (scenarioFilter && !v.scenario.includes(scenarioFilter)) return false;
      if (v.impl === 'kcat' && !hasKcat) {
        failures.push('kcat is not installed (bash scripts/kafka.sh tools): the kcat reference was skipped');
        return false;
      }
      return true;
    });
    if (variants.length === 0) continue;
    log(`bench: ${group.title}: ${variants.map((v) => `${v.scenario}/${v.impl}`).join(', ')} x ${group.rounds} rounds`);
    for (let round = 1; round <= group.rounds; round++) {
      for (let k = 0; k < variants.length; k++) {
        const variant = variants[(k + round - 1) % variants.length];
        if (variant === undefined) continue;
        const config: WorkerConfig = { ...variant.config, topic: topicFor(group, variant, round), mqttUrl, kafkaBrokers };
        const t0 = Date.now();
        try {
          const result = await runWorker(config);
          const m: Measurement = { suite: group.suite, scenario: variant.scenario, impl: variant.impl, round, stat: 'round', ...result };
          measurements.push(m);
          process.stdout.write(`${JSON.stringify(m)}\n`);
          const lat = result.p99_ms === undefined ? '' : ` p50 ${result.p50_ms} ms p99 ${result.p99_ms} ms max ${result.max_ms} ms`;
          log(
            `  round ${round} ${variant.scenario} ${variant.impl}: ${result.msgs_per_s} msg/s (n ${result.n})${lat} rss ${result.rss_mb} MB${result.cpu_us_per_msg ? ` cpu ${result.cpu_us_per_msg} us/msg` : ''} [${((Date.now() - t0) / 1000).toFixed(1)} s]${result.note ? ` (${result.note})` : ''}`,
          );
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          failures.push(`${group.suite} ${variant.scenario} ${variant.impl} round ${round}: ${message.split('\n')[0]}`);
          log(`  round ${round} ${variant.scenario} ${variant.impl}: FAILED ${message}`);
        }
      }
    }
  }
  for (const summary of median(measurements)) process.stdout.write(`${JSON.stringify(summary)}\n`);
  const seconds = Math.round((Date.now() - started) / 1000);
  writeResults(resultsPath, { quick, measurements, failures, seconds, mqttUrl, kafkaBrokers, loadAtStart });
  log(`bench: done in ${seconds} s; wrote ${resultsPath}`);
  if (failures.length > 0) log(`bench: ${failures.length} problem(s):\n  ${failures.join('\n  ')}`);
}

main().catch((error: unknown) => {
  log(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exit(1);
});
