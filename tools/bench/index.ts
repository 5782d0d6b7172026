/**
 * `npm run bench` — every benchmark scenario of issue #7, side by side with real baselines, in one run.
 *
 *   npm run bench                  full run (several minutes)
 *   npm run bench -- --quick       under a minute: shorter windows, fewer N values, smaller counts
 *   npm run bench -- --long        full run plus the soak (scenario 8: the bare engine 10 min, then the full server 30 min)
 *   options: --only 1,2,5,9 (JSON only, docs untouched)  --engine-soak-minutes M  --server-soak-minutes M  --no-docs
 *            (0 minutes skips that half of the soak: `--only 8 --engine-soak-minutes 0` runs the server soak alone,
 *            at 500 refreshes/s when scenario 3 did not run; tools/bench/ab/soak-memory.ts A/Bs its memory)
 *            --profile / --no-profile: profile a separate provisioning server (default: on, off with --quick)
 *
 * Scenario 9 is the scale-out comparison of issue 16 (tools/bench/scale-out-servers.ts: SQLite with one
 * instance vs PostgreSQL with one and two). At the end the summary of every target of
 * docs/architecture.md "Performance targets" (report.ts `checks`, ratios from this run) is printed and
 * stored in the JSON as `summary`.
 *
 * Results: bench-results/<timestamp>.json and bench-results/latest.json, and docs/benchmarks.md with
 * docs/bench-throughput.svg (regenerated from the JSON). Servers run pinned to one core and the load
 * generator (tools/bench/loadgen.ts, a separate process) to another, with `taskset -c`, when possible.
 * Scenario 4's handshakes come from an OpenSSL C client (tools/dtls-peers/openssl-loadgen.c, built per
 * run by lib/cload.ts) when it builds, else from the Node generator (BENCH_DTLS_GENERATOR=node forces it).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, LoadGenerator } from './lib/procs.ts';
import { loadAvg, machineInfo, pinning, round } from './lib/sys.ts';
import { checks, renderReport, renderSvg, type Results } from './report.ts';
import { scaleOut } from './scale-out-servers.ts';
import { FULL, QUICK, measureFloor, profileProvisioning, scenario1, scenario4, scenario5, scenario6, scenario7, scenario8, scenarios2and3, type Ctx, type Mode, type S4 } from './scenarios.ts';

const argv = process.argv.slice(2);
const has = (f: string): boolean => argv.includes(f);
const val = (f: string): string | undefined => {
  const i = argv.indexOf(f);
  return i >= 0 ? argv[i + 1] : undefined;
};
for (const a of argv) {
  if (a.startsWith('--') && !['--quick', '--long', '--only', '--engine-soak-minutes', '--server-soak-minutes', '--no-docs', '--profile', '--no-profile', '--help'].includes(a)) {
    console.error(`unknown option ${a}`);
    process.exit(2);
  }
}
if (has('--help')) {
  console.log('usage: npm run bench [-- --quick | --long] [--only 1,2,…,9] [--engine-soak-minutes M (10)] [--server-soak-minutes M (30)] [--[no-]profile] [--no-docs]');
  process.exit(0);
}

const base = has('--quick') ? QUICK : FULL;
const mode: Mode = {
  ...base,
  long: has('--long'),
  engineSoakMinutes: Number(val('--engine-soak-minutes') ?? base.engineSoakMinutes),
  serverSoakMinutes: Number(val('--server-soak-minutes') ?? base.serverSoakMinutes),
};
const only = val('--only')
  ?.split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => n >= 1 && n <= 9);
const want = (n: number): boolean => (only === undefined ? n !== 8 || mode.long : only.includes(n) && (n !== 8 || mode.long || only.includes(8)));
const command = process.env.npm_lifecycle_event === 'bench' ? `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}` : `npx tsx tools/bench/index.ts${argv.length ? ` ${argv.join(' ')}` : ''}`;

const started = new Date();
const t0 = performance.now();
const log = (msg: string): void => console.log(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}`);

const cpu = pinning();
const results: Results = {
  version: 1,
  mode: mode.name,
  long: mode.long,
  command,
  startedAt: started.toISOString(),
  finishedAt: '',
  seconds: 0,
  machine: machineInfo(),
  load: { start: loadAvg(), end: loadAvg() },
  pinning: cpu,
  settings: mode,
  failures: {},
};
log(`${command} — ${results.machine.nproc} CPUs (${results.machine.cpuModel}), Node ${results.machine.node}, load average ${results.load.start.join(' ')}`);
log(cpu.server !== undefined ? `servers pinned to CPU ${cpu.server}, load generator to CPU ${cpu.generator}` : 'not pinned (taskset missing or fewer than 2 CPUs)');

const gen = await LoadGenerator.start(cpu.generator);
const ctx: Ctx = { mode, gen, cpu, log };

async function step<T>(name: string, f: () => Promise<T>): Promise<T | undefined> {
  log(`${name}…`);
  try {
    return await f();
  } catch (e) {
    const msg = (e as Error).stack ?? String(e);
    log(`${name} FAILED: ${msg}`);
    results.failures[name] = String((e as Error).message ?? e).slice(0, 2000);
    return undefined;
  }
}

try {
  // Scenario 6 is judged against one verify of the same run.
  if (want(2) || want(3) || want(6)) results.floor = await step('crypto floor', async () => measureFloor(ctx));
  if (want(1)) results.s1 = await step('scenario 1: bare CoAP engine vs libcoap', () => scenario1(ctx));
  if (want(2) || want(3) || want(4) || want(7)) {
    await step('scenarios 2, 3, 4: provisioning, refresh, DTLS', async () => {
      const { s2, s3 } = await scenarios2and3(ctx, results.floor, async (srv) => {
        if (want(4)) {
          results.s4 = await step('scenario 4: DTLS handshakes', () => scenario4(ctx, srv));
        }
      });
      results.s2 = s2;
      results.s3 = s3;
    });
  }
  if (want(4) && results.s4 === undefined && results.failures['scenario 4: DTLS handshakes'] === undefined) {
    results.s4 = { landed: false, reason: 'not run (the provisioning server did not start)' } satisfies S4;
  }
  const profile = has('--profile') || (!has('--no-profile') && mode.name === 'full');
  if (profile && want(2)) results.profile = await step('profile of a provisioning server', () => profileProvisioning(ctx));
  if (want(7) && results.s2?.sizes) results.s7 = await step('scenario 7: sizes vs JWT', () => scenario7(results.s2!.sizes!));
  if (want(5)) results.s5 = await step('scenario 5: allowlist import', () => scenario5(ctx));
  if (want(6)) results.s6 = await step('scenario 6: pending devices polling', () => scenario6(ctx));
  if (want(9)) results.s9 = await step('scenario 9: scale-out (SQLite 1 vs PostgreSQL 1 and 2 instances)', () => scaleOut({ devices: mode.scaleOutDevices, concurrency: mode.scaleOutConcurrency, log }));
  if (want(8)) {
    const engineRate = results.s1?.points.find((p) => p.n === 16)?.ours.opsPerSec ?? results.s1?.points[0]?.ours.opsPerSec ?? 10_000;
    const refreshRate = Math.max(0, ...(results.s3?.points.map((p) => p.result.opsPerSec) ?? [1000]));
    results.s8 = await step('scenario 8: soak', () => scenario8(ctx, engineRate, refreshRate));
  }
} finally {
  await gen.stop();
}

results.load.end = loadAvg();
results.finishedAt = new Date().toISOString();
results.seconds = round((performance.now() - t0) / 1000, 1);
results.summary = checks(results);
log(`summary (targets of docs/architecture.md "Performance targets", ratios from this run${mode.name === 'quick' ? ', quick' : ''}):`);
for (const c of results.summary) console.log(`  ${c.verdict.replace(/\*/g, '').padEnd(12)} ${c.target}\n               ${c.measured}`);

const dir = join(ROOT, 'bench-results');
mkdirSync(dir, { recursive: true });
const stamp = started.toISOString().replace(/[:.]/g, '-');
const json = `${JSON.stringify(results, null, 2)}\n`;
writeFileSync(join(dir, `${stamp}.json`), json);
writeFileSync(join(dir, 'latest.json'), json);
log(`results: bench-results/${stamp}.json (and latest.json)`);
if (only === undefined && !has('--no-docs')) {
  writeFileSync(join(ROOT, 'docs', 'benchmarks.md'), renderReport(results, `bench-results/${stamp}.json`));
  writeFileSync(join(ROOT, 'docs', 'bench-throughput.svg'), renderSvg(results));
  log('docs/benchmarks.md and docs/bench-throughput.svg regenerated');
} else {
  log('docs not regenerated (--only or --no-docs)');
}
log(`done in ${results.seconds} s; load average ${results.load.start.join(' ')} → ${results.load.end.join(' ')}`);
process.exitCode = Object.keys(results.failures).length > 0 ? 1 : 0;
