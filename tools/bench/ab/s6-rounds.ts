/**
 * Scenario 6 (pending polls) alone, several rounds, printing server CPU per poll each round; with
 * --prof DIR the server runs under `node --cpu-prof` into DIR; with --perf-map it writes
 * /tmp/perf-PID.map for `perf record`. Runs this tree's dist/ (build first).
 *   npx tsx tools/bench/ab/s6-rounds.ts [ROUNDS=3] [--prof DIR | --perf-map] [--window-ms MS] [--warmup-ms MS]
 *     [--warm-polls N (the burst before the window; 0: none)] [--idle-ms MS (the idle reading)]
 *     [--full (the full run's sizes: 100,000 pending devices, 1,667 polls/s, a 20 s window)]
 *     [--node-arg ARG (repeatable; a node option for the server, e.g. --trace-gc: its output comes on stderr)]
 */
import { LoadGenerator } from '../lib/procs.ts';
import { pinning } from '../lib/sys.ts';
import { FULL, QUICK, scenario6, type Ctx } from '../scenarios.ts';

const args = process.argv.slice(2);
const profAt = args.indexOf('--prof');
const profDir = profAt >= 0 ? args[profAt + 1] : undefined;
const rounds = Number(args.find((a, i) => /^\d+$/.test(a) && (i === 0 || !args[i - 1]!.startsWith('--'))) ?? 3);
const windowAt = args.indexOf('--window-ms');
const warmAt = args.indexOf('--warmup-ms');
const warmPollsAt = args.indexOf('--warm-polls');
const idleAt = args.indexOf('--idle-ms');
const mode = {
  ...(args.includes('--full') ? FULL : QUICK),
  ...(windowAt >= 0 ? { pendingWindowMs: Number(args[windowAt + 1]) } : {}),
  ...(warmAt >= 0 ? { warmupMs: Number(args[warmAt + 1]) } : {}),
  ...(warmPollsAt >= 0 ? { pendingWarmPolls: Number(args[warmPollsAt + 1]) } : {}),
  ...(idleAt >= 0 ? { pendingIdleMs: Number(args[idleAt + 1]) } : {}),
};
const cpu = pinning();
const gen = await LoadGenerator.start(cpu.generator);
const ctx: Ctx = { mode, gen, cpu, log: () => {} };
try {
  for (let r = 1; r <= rounds; r++) {
    const nodeArgs = [
      ...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : args.includes('--perf-map') ? ['--perf-basic-prof', '--interpreted-frames-native-stack'] : []),
      ...args.filter((_, i) => args[i - 1] === '--node-arg'),
    ];
    const s = await scenario6(ctx, nodeArgs.length > 0 ? { nodeArgs } : {});
    const v = s.result.server;
    console.log(`round ${r} polls=${s.result.ops} cpu_us_per_poll=${v?.cpuPerOpUs.toFixed(0)} main_us_per_poll=${v ? ((v.mainThreadSeconds / s.result.ops) * 1e6).toFixed(0) : '-'} sys_s=${v?.systemSeconds} p99_ms=${s.result.latency.p99} warm=${s.warm?.polls ?? 0}/${s.warm?.seconds ?? 0}s idle_ms_per_s=${s.idle?.cpuMsPerSec} (${s.idle?.slicesMsPerSec.join(" ")}) net_us_per_poll=${s.netCpuPerPollUs?.toFixed(0)}`);
  }
} finally {
  await gen.stop();
}
