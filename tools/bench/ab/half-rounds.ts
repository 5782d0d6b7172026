/**
 * The half-load tail (issue 17): provisioning and refresh, open loop at a fixed rate, several rounds,
 * printing each round's p99, server CPU per operation, retransmits, late/missed sends, the server's
 * loop delay and GC, and the p99 of every --sample-ms interval. Runs this tree's dist/ (build first).
 * With --ab DIR a second server runs DIR's bin/ and dist/ (another checkout, already built) and the
 * rounds alternate between the two (A = DIR, B = this tree; A first in odd rounds, B first in even
 * ones), one generator and one lock hold for both.
 *   npx tsx tools/bench/ab/half-rounds.ts [ROUNDS=3] [--rate R (650)] [--refresh-rate R (620; 0: no refresh)]
 *     [--window-ms MS (5000)] [--sample-ms MS (500)] [--ab DIR] [--node-args '--trace-gc …'] [--env K=V,K=V]
 */
import { LoadGenerator, startIdprov, type IdprovServer } from '../lib/procs.ts';
import type { Job, LoadResult } from '../lib/jobs.ts';
import { pinning } from '../lib/sys.ts';
import { QUICK, load, provideDevices, type Ctx } from '../scenarios.ts';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const rounds = Number(args.find((a, i) => /^\d+$/.test(a) && (i === 0 || !args[i - 1]!.startsWith('--'))) ?? 3);
const rate = Number(opt('--rate') ?? 650);
const refreshRate = Number(opt('--refresh-rate') ?? 620);
const windowMs = Number(opt('--window-ms') ?? 5000);
const sampleMs = Number(opt('--sample-ms') ?? 500);
const warmupMs = QUICK.warmupMs;
const abRoot = opt('--ab');
const nodeArgs = opt('--node-args')?.split(' ').filter(Boolean) ?? [];
const env = Object.fromEntries((opt('--env') ?? '').split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]));
const cpu = pinning();
const gen = await LoadGenerator.start(cpu.generator);
const ctx: Ctx = { mode: QUICK, gen, cpu, log: () => {} };

function report(r: number, name: string, what: string, res: LoadResult): void {
  const v = res.server;
  const samples = (res.samples ?? []).map((s) => (s.p99 ?? NaN).toFixed(1)).join(' ');
  const errs = Object.entries(res.errors).map(([k, c]) => `${c}×${k}`).join(',');
  console.log(
    `round ${r} ${name} ${what} rate=${res.opsPerSec.toFixed(0)}/s ops=${res.ops} p50_ms=${res.latency.p50} p99_ms=${res.latency.p99} max_ms=${res.latency.max} ` +
      `cpu_us_per_op=${v?.cpuPerOpUs.toFixed(0)} main_us_per_op=${v ? ((v.mainThreadSeconds / res.ops) * 1e6).toFixed(0) : '-'} ` +
      `server_wait=${v?.waitPct.toFixed(0)}% gen_wait=${res.generatorWaitPct.toFixed(0)}% retx=${res.retransmits} late=${res.late ?? '-'} missed=${res.missed ?? '-'}${errs ? ` errors=${errs}` : ''} sample_p99s=[${samples}]`,
  );
}

async function openLoad(srv: IdprovServer, op: 'prov' | 'refresh', r: number): Promise<LoadResult> {
  const job: Job = { kind: 'open', op, target: { host: '127.0.0.1', port: srv.coapPort }, rate: r, slots: 256, warmupMs, durationMs: windowMs, maxOps: 1_000_000, serverPid: srv.pid, sampleMs };
  return load(ctx, job);
}

const servers: Array<{ name: string; srv: IdprovServer }> = [];
try {
  if (abRoot) servers.push({ name: 'A', srv: await startIdprov({ cpu: cpu.server, nodeArgs, root: abRoot, env }) });
  servers.push({ name: abRoot ? 'B' : '-', srv: await startIdprov({ cpu: cpu.server, nodeArgs, env }) });
  for (let r = 1; r <= rounds; r++) {
    for (const { name, srv } of r % 2 === 1 ? servers : [...servers].reverse()) {
      // Fresh devices for each round and server (reset: the generator's leftovers may belong to the other one).
      await provideDevices(ctx, srv, Math.ceil((rate * 1.3 * (warmupMs + windowMs)) / 1000) + 200, true);
      report(r, name, 'prov', await openLoad(srv, 'prov', rate));
      if (refreshRate > 0) {
        const p = await ctx.gen.run({ kind: 'prepare-refresh' });
        if (!p.ok) throw new Error(p.error);
        report(r, name, 'refresh', await openLoad(srv, 'refresh', refreshRate));
      }
    }
  }
} finally {
  for (const { srv } of servers) await srv.stop();
  await gen.stop();
}
