/**
 * Scenario 2 (provisioning, closed loop) at one concurrency, several rounds on one server, printing
 * server CPU per provisioning each round. Every device is new, as in scenario 2. Runs this tree's
 * dist/ (build first). With --ab DIR, a second server runs DIR's bin/ and dist/ (another checkout,
 * already built) and the rounds alternate between the two (A = DIR, B = this tree; A first in odd
 * rounds, B first in even ones), one generator and one lock hold for both. With --prof DIR the server
 * runs under `node --cpu-prof` into DIR; --node-args passes more flags (e.g. '--trace-gc').
 *   npx tsx tools/bench/ab/s2-rounds.ts [ROUNDS=3] [--n N (16)] [--window-ms MS (1200)] [--ab DIR] [--prof DIR] [--node-args '--trace-gc …']
 */
import { LoadGenerator, startIdprov, type IdprovServer } from '../lib/procs.ts';
import { pinning } from '../lib/sys.ts';
import { QUICK, load, provideDevices, type Ctx } from '../scenarios.ts';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const rounds = Number(args.find((a, i) => /^\d+$/.test(a) && (i === 0 || !args[i - 1]!.startsWith('--'))) ?? 3);
const n = Number(opt('--n') ?? 16);
const windowMs = Number(opt('--window-ms') ?? QUICK.durationMs);
const warmupMs = QUICK.warmupMs;
const prof = opt('--prof');
const abRoot = opt('--ab');
const nodeArgs = [...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []), ...(opt('--node-args')?.split(' ').filter(Boolean) ?? [])];
const cpu = pinning();
const gen = await LoadGenerator.start(cpu.generator);
const ctx: Ctx = { mode: QUICK, gen, cpu, log: () => {} };
const servers: Array<{ name: string; srv: IdprovServer }> = [];
try {
  if (abRoot) servers.push({ name: 'A', srv: await startIdprov({ cpu: cpu.server, nodeArgs, root: abRoot }) });
  servers.push({ name: abRoot ? 'B' : '-', srv: await startIdprov({ cpu: cpu.server, nodeArgs }) });
  for (let r = 1; r <= rounds; r++) {
    for (const { name, srv } of r % 2 === 1 ? servers : [...servers].reverse()) {
      // Fresh devices for each round, imported into this round's server only (generous for ~3,000/s):
      // the generator's leftovers may belong to the other one.
      await provideDevices(ctx, srv, Math.ceil((3000 * (warmupMs + windowMs)) / 1000), true);
      // CLOCK_MONOTONIC µs, as the server's --cpu-prof timestamps: to cut a profile to the window.
      const fromUs = process.hrtime.bigint() / 1000n;
      const res = await load(ctx, { kind: 'closed', op: 'prov', target: { host: '127.0.0.1', port: srv.coapPort }, concurrency: n, warmupMs, durationMs: windowMs, maxOps: 1_000_000, serverPid: srv.pid });
      const toUs = process.hrtime.bigint() / 1000n;
      const v = res.server;
      const errs = Object.entries(res.errors).map(([k, c]) => `${c}×${k}`).join(',');
      console.log(
        `round ${r} ${name} N=${n} ops=${res.ops} rate=${res.opsPerSec.toFixed(0)}/s cpu_us_per_op=${v?.cpuPerOpUs.toFixed(1)} main_us_per_op=${v ? ((v.mainThreadSeconds / res.ops) * 1e6).toFixed(1) : '-'} p99_ms=${res.latency.p99} window_us=${fromUs}-${toUs}${errs ? ` errors=${errs}` : ''}`,
      );
    }
  }
} finally {
  for (const { srv } of servers) await srv.stop();
  await gen.stop();
}
