/**
 * Scenario 4's DTLS handshake generator in C (tools/dtls-peers/openssl-loadgen.c, OpenSSL 3): the Node
 * generator's client costs about as much CPU per handshake as a server, so on one core it cannot drive
 * a server to the DESIGN targets. Built once per benchmark run into a temp dir (build-loadgen.sh);
 * when that fails (no compiler, no libssl-dev) scenario 4 falls back to the Node generator.
 *
 * One closed-loop window per run of the program, pinned to the generator core. The program prints
 * `WINDOW START` and `WINDOW END` on stdout when the timed window starts and ends; the server's CPU,
 * run-queue wait and memory are read at those two moments with the same helpers the Node generator
 * uses (./sys.ts `cpuAt`, `serverStats`). The generator measures its own CPU over the window
 * (getrusage at the same moments) and ends with one JSON line of counts, latencies and suites.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LoadResult, ServerSample, Target } from './jobs.ts';
import type { Latency } from './stats.ts';
import { ROOT, stopChild, track } from './procs.ts';
import { cpuAt, pinned, runqueueWaitNs, serverStats } from './sys.ts';

export type CLoadgen = { ok: true; path: string; build: string } | { ok: false; note: string };

let built: CLoadgen | undefined;

/**
 * Build the generator (once per process); `ok: false` with the reason when it does not build, or
 * when `BENCH_DTLS_GENERATOR=node` asks for the Node generator (to compare the two).
 */
export function cLoadgen(): CLoadgen {
  if (built) return built;
  if (process.env.BENCH_DTLS_GENERATOR === 'node') return (built = { ok: false, note: 'BENCH_DTLS_GENERATOR=node' });
  const dir = mkdtempSync(join(tmpdir(), 'idprov-bench-cload-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const script = 'tools/dtls-peers/build-loadgen.sh';
  const r = spawnSync('bash', [script, dir], { cwd: ROOT, encoding: 'utf8' });
  const path = r.stdout?.trim().split('\n').pop();
  built =
    r.status === 0 && path
      ? { ok: true, path, build: `bash ${script}` }
      : { ok: false, note: `the OpenSSL C generator did not build (${script}): ${(r.error?.message ?? r.stderr ?? '').trim().slice(0, 300) || `exit ${r.status}`}` };
  return built;
}

export interface CRun {
  target: Target;
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  maxOps: number;
  serverPid?: number;
}

/** The generator's arguments for one run (the target's PSK and suites as in tools/bench/loadgen.ts). */
export function cLoadgenArgs(run: CRun): string[] {
  const t = run.target;
  if (t.host !== '127.0.0.1') throw new Error('the load generator only targets 127.0.0.1');
  const auth = t.psk ? ['--psk', t.psk.identity, t.psk.keyHex, ...((t.psk.identities ?? 1) > 1 ? ['--psk-identities', String(t.psk.identities)] : [])] : ['--ecdhe'];
  const suites = t.suites?.length ? ['--suite', t.suites.map((s) => `0x${s.toString(16).padStart(4, '0')}`).join(',')] : [];
  return ['--host', t.host, '--port', String(t.port), '--concurrency', String(run.concurrency), '--warmup-ms', String(run.warmupMs), '--duration-ms', String(run.durationMs), '--max-ops', String(run.maxOps), ...auth, ...suites];
}

/** The program's last line (its numbers; null where Node's summary has NaN). */
interface CReport {
  ops: number;
  seconds: number | null;
  opsPerSec: number | null;
  latency: Record<keyof Latency, number | null>;
  errors: Record<string, number>;
  suites: Record<string, number>;
  retransmits: number;
  stoppedBy: LoadResult['stoppedBy'];
  generator: { cpuSeconds: number | null; cpuPct: number | null; waitPct: number | null };
}

const num = (v: number | null | undefined): number => (v === null || v === undefined ? NaN : v);

/** One closed-loop DTLS window with the C generator at `bin`, pinned to `cpu`. */
export async function runCLoadgen(bin: string, cpu: string | undefined, run: CRun): Promise<{ result: LoadResult; command: string }> {
  const args = cLoadgenArgs(run);
  const [cmd, argv] = pinned(cpu, bin, args);
  const command = `${cpu !== undefined ? `taskset -c ${cpu} ` : ''}${bin} ${args.join(' ')}`;
  const child = track(spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  const pid = run.serverPid;
  let cpu0 = cpuAt(pid);
  let wait0 = 0;
  let t0 = 0;
  let seconds = NaN;
  let server: ServerSample | undefined;
  let last = '';
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const l = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (l === 'WINDOW START') {
        t0 = performance.now();
        cpu0 = cpuAt(pid);
        wait0 = pid !== undefined ? runqueueWaitNs(pid) : 0;
      } else if (l === 'WINDOW END') {
        seconds = (performance.now() - t0) / 1000;
        server = serverStats(pid, cpu0, wait0, seconds, 0);
      } else if (l) last = l;
    }
  });
  // Bounded: the window, then the handshakes in flight (5 s at most each), with a margin.
  const limit = setTimeout(() => void stopChild(child, 1000), run.warmupMs + run.durationMs + 30_000);
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  clearTimeout(limit);
  let j: CReport;
  try {
    j = JSON.parse(last) as CReport;
  } catch {
    throw new Error(`openssl-loadgen failed (exit ${code}): ${stderr.trim().slice(-500) || last.slice(0, 200)}`);
  }
  const ops = j.ops;
  if (server) server.cpuPerOpUs = ops > 0 ? (server.cpuSeconds / ops) * 1e6 : NaN;
  const l = j.latency;
  const result: LoadResult = {
    op: 'dtls',
    mode: 'closed',
    concurrency: run.concurrency,
    ops,
    seconds: num(j.seconds),
    opsPerSec: num(j.opsPerSec),
    latency: { p50: num(l.p50), p90: num(l.p90), p99: num(l.p99), max: num(l.max), mean: num(l.mean), samples: num(l.samples) },
    errors: j.errors,
    retransmits: j.retransmits,
    stoppedBy: j.stoppedBy,
    generatorCpuPct: num(j.generator.cpuPct),
    generatorWaitPct: num(j.generator.waitPct),
    ...(server ? { server } : {}),
    suites: j.suites,
  };
  return { result, command };
}
