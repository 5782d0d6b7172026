/**
 * The full-server soak of scenario 8 alone, for an A/B of its memory (issue 17): the same fixed
 * population of provisioned devices refreshing at a fixed open-loop rate, with the server's memory
 * read every 10 s from /proc/PID/status (VmRSS, RssAnon, RssFile) and from its /metrics (V8 heap
 * used and committed, external memory), then the second-half slope of each (MB/min); "anon-committed"
 * is the anonymous memory outside the V8 heap (malloc: Buffers, SQLite, OpenSSL, libuv). One server per run; several
 * runs alternate the trees and environments given, round by round.
 *
 *   npx tsx tools/bench/ab/soak-memory.ts [--rounds N (1)] [--rate R (500)] [--minutes M (8)] [--devices N (5000)]
 *     --run LABEL=ROOT[,ENV=VALUE…] (repeatable: a tree whose dist/ runs, e.g. old=/tmp/soak-old,MALLOC_ARENA_MAX=2)
 *
 * Build each tree's dist/ first (node tools/build.mjs). Without --run it runs this tree once.
 */
import { readFileSync } from 'node:fs';
import { LoadGenerator, ROOT, startIdprov } from '../lib/procs.ts';
import { pinning, round } from '../lib/sys.ts';
import { QUICK, load, provideDevices, type Ctx } from '../scenarios.ts';
import { slope } from '../lib/stats.ts';

const args = process.argv.slice(2);
const opt = (f: string, d: string): string => {
  const i = args.indexOf(f);
  return i >= 0 ? args[i + 1]! : d;
};
const rounds = Number(opt('--rounds', '1'));
const rate = Number(opt('--rate', '500'));
const minutes = Number(opt('--minutes', '8'));
const devices = Number(opt('--devices', '5000'));
const runs = args
  .map((a, i) => (args[i - 1] === '--run' ? a : undefined))
  .filter((a): a is string => a !== undefined)
  .map((spec) => {
    const [label, rest] = spec.split(/=(.*)/s) as [string, string];
    const [root, ...envs] = rest.split(',');
    return { label, root: root!, env: Object.fromEntries(envs.map((e) => e.split(/=(.*)/s).slice(0, 2) as [string, string])) };
  });
if (runs.length === 0) runs.push({ label: 'this', root: ROOT, env: {} });

interface Sample {
  t: number;
  rss: number;
  anon: number;
  file: number;
  heap: number;
  /** V8 heap committed: heap used swings with the young generation and hides the old space's growth. */
  heapTotal: number;
  external: number;
}

function statusMb(pid: number): { rss: number; anon: number; file: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (f: string): number => Number(new RegExp(`${f}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN) / 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
}

function metricMb(name: string, text: string): number {
  const m = new RegExp(`^\\w*${name} ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) / 2 ** 20 : NaN;
}

const cpu = pinning();
const gen = await LoadGenerator.start(cpu.generator);
const ctx: Ctx = { mode: QUICK, gen, cpu, log: () => {} };

async function soak(run: (typeof runs)[number], r: number): Promise<void> {
  const srv = await startIdprov({ cpu: cpu.server, root: run.root, env: run.env });
  try {
    await provideDevices(ctx, srv, devices, true);
    await load(ctx, { kind: 'closed', op: 'prov', target: { host: '127.0.0.1', port: srv.coapPort }, concurrency: 16, warmupMs: 0, durationMs: 120_000, maxOps: devices, serverPid: srv.pid });
    const p = await gen.run({ kind: 'prepare-refresh' });
    if (!p.ok) throw new Error(p.error);
    const samples: Sample[] = [];
    const t0 = performance.now();
    const take = async (): Promise<void> => {
      const t = (performance.now() - t0) / 60_000;
      const st = statusMb(srv.pid);
      const text = await fetch(`http://127.0.0.1:${srv.adminPort}/metrics`, { headers: { authorization: `Bearer ${srv.adminToken}` } })
        .then((x) => x.text())
        .catch(() => '');
      samples.push({ t, ...st, heap: metricMb('nodejs_heap_size_used_bytes', text), heapTotal: metricMb('nodejs_heap_size_total_bytes', text), external: metricMb('nodejs_external_memory_bytes', text) });
    };
    const timer = setInterval(() => void take(), 10_000);
    const ms = minutes * 60_000;
    const res = await load(ctx, { kind: 'open', op: 'refresh', target: { host: '127.0.0.1', port: srv.coapPort }, rate, slots: 256, warmupMs: 2000, durationMs: ms, maxOps: Math.ceil((rate * ms) / 1000) * 2, serverPid: srv.pid, sampleMs: 60_000 });
    clearInterval(timer);
    const h = samples.slice(Math.floor(samples.length / 2));
    const sl = (k: keyof Sample): string => round(slope(h.map((s) => s.t), h.map((s) => s[k])), 2).toFixed(2);
    const first = samples[0]!;
    const last = samples[samples.length - 1]!;
    console.log(
      `round ${r} ${run.label} ${Object.entries(run.env).map(([k, v]) => `${k}=${v}`).join(' ')} rate=${round(res.opsPerSec, 0)}/s ops=${res.ops} errors=${Object.values(res.errors).reduce((a, b) => a + b, 0)} ` +
        `cpu_us_per_op=${round(res.server?.cpuPerOpUs ?? NaN, 0)} RSS ${round(first.rss, 0)}→${round(last.rss, 0)} MB (anon ${round(first.anon, 0)}→${round(last.anon, 0)}, file ${round(first.file, 0)}→${round(last.file, 0)}; heap used ${round(first.heap, 0)}→${round(last.heap, 0)}, committed ${round(first.heapTotal, 0)}→${round(last.heapTotal, 0)}, external ${round(first.external, 0)}→${round(last.external, 0)}) ` +
        `2nd-half slope MB/min: rss ${sl('rss')} anon ${sl('anon')} file ${sl('file')} heap used ${sl('heap')} committed ${sl('heapTotal')} anon-committed ${round(slope(h.map((s) => s.t), h.map((s) => s.anon - s.heapTotal)), 2).toFixed(2)} external ${sl('external')}`,
    );
    if (args.includes('--samples')) for (const s of samples) console.log(`  t=${s.t.toFixed(2)} rss=${s.rss.toFixed(1)} anon=${s.anon.toFixed(1)} file=${s.file.toFixed(1)} heap=${s.heap.toFixed(1)} committed=${s.heapTotal.toFixed(1)} ext=${s.external.toFixed(1)}`);
  } finally {
    await srv.stop();
  }
}

try {
  for (let r = 1; r <= rounds; r++) for (const run of runs) await soak(run, r);
} finally {
  await gen.stop();
}
