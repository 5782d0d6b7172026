/**
 * Machine facts and per-process counters for the benchmark: /proc/PID/stat CPU time, /proc/PID/status
 * RSS, CPU pinning with `taskset`, free ports, and the machine description every report carries.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import type { ServerSample } from './jobs.ts';

/** Clock ticks per second for /proc/PID/stat utime/stime (`getconf CLK_TCK`, 100 on Linux). */
export const CLK_TCK: number = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system, every thread, including exited ones) used by process `pid` so far. */
export function cpuSeconds(pid: number): number {
  const t = cpuTimes(pid);
  return t.user + t.system;
}

/**
 * User and system CPU seconds of process `pid` (/proc/PID/stat utime, stime, every thread), and of
 * its main thread alone (/proc/PID/task/PID/stat: for Node, the JavaScript thread; the rest is the
 * libuv pool that runs SQLite and crypto jobs, and V8's GC and compiler threads).
 */
export function cpuTimes(pid: number): { user: number; system: number; main: number } {
  const all = statTimes(`/proc/${pid}/stat`);
  let main = NaN;
  try {
    const m = statTimes(`/proc/${pid}/task/${pid}/stat`);
    main = m.user + m.system;
  } catch {
    // no per-thread accounting here
  }
  return { ...all, main };
}

function statTimes(file: string): { user: number; system: number } {
  const s = readFileSync(file, 'utf8');
  // The command name (field 2) may contain spaces; fields after the closing parenthesis are fixed.
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  return { user: Number(rest[11]) / CLK_TCK, system: Number(rest[12]) / CLK_TCK };
}

/**
 * CPU nanoseconds of every live thread of `pid` (/proc/PID/task/TID/schedstat, first field): the
 * scheduler's own count, exact to the nanosecond where /proc/PID/stat counts 10 ms ticks; an idle
 * server spends ~1 ms a second, which ticks cannot tell apart from 0 in a few seconds. Threads that
 * exited meanwhile are not counted (an idle idprov server starts none).
 */
export function threadsCpuNs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) || 0;
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return ns;
}

/**
 * Nanoseconds the main thread of `pid` has spent runnable but waiting for a CPU (/proc/PID/schedstat,
 * second field): on a shared machine, the time other processes held the core. 0 when unavailable.
 */
export function runqueueWaitNs(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) || 0;
  } catch {
    return 0;
  }
}

/** CPU times of `pid` ({@link cpuTimes}), zero when there is no such process (or no pid). */
export const NO_CPU = { user: 0, system: 0, main: 0 };
export function cpuAt(pid: number | undefined): { user: number; system: number; main: number } {
  try {
    return pid === undefined ? NO_CPU : cpuTimes(pid);
  } catch {
    return NO_CPU;
  }
}

/**
 * A server's CPU, run-queue wait and memory over a load window, from its CPU times (`cpu0`, {@link
 * cpuAt}) and run-queue wait (`wait0`, {@link runqueueWaitNs}) read when the window started; read
 * now, when it ends. Both load generators (tools/bench/loadgen.ts, lib/cload.ts) sample with this.
 */
export function serverStats(pid: number | undefined, cpu0: { user: number; system: number; main: number }, wait0: number, seconds: number, ops: number): ServerSample | undefined {
  if (pid === undefined) return undefined;
  try {
    const now = cpuTimes(pid);
    const waitPct = ((runqueueWaitNs(pid) - wait0) / 1e9 / seconds) * 100;
    const cpu = now.user + now.system - cpu0.user - cpu0.system;
    return {
      cpuSeconds: cpu,
      systemSeconds: now.system - cpu0.system,
      mainThreadSeconds: now.main - cpu0.main,
      cpuPerOpUs: ops > 0 ? (cpu / ops) * 1e6 : NaN,
      cpuPct: (cpu / seconds) * 100,
      rssMb: memMb(pid, 'VmRSS'),
      hwmMb: memMb(pid, 'VmHWM'),
      waitPct,
    };
  } catch {
    return undefined;
  }
}

/** Resident set size (VmRSS) or its peak (VmHWM) of `pid` in MB (MiB). */
export function memMb(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** The three load averages, as printed by `uptime`. */
export function loadAvg(): [number, number, number] {
  const [a, b, c] = os.loadavg();
  return [round(a!, 2), round(b!, 2), round(c!, 2)];
}

export function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** True when `taskset` (util-linux) can pin processes here. */
export const HAVE_TASKSET: boolean = spawnSync('taskset', ['-c', '0', 'true']).status === 0;

/** CPUs this process may run on. */
export function cpuCount(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/**
 * The cores for the server and the load generator: two different ones when there are at least two
 * and `taskset` works, else none (the report then says the processes were not pinned).
 */
export function pinning(): { server: string | undefined; generator: string | undefined } {
  if (!HAVE_TASKSET || cpuCount() < 2) return { server: undefined, generator: undefined };
  return { server: '0', generator: '1' };
}

/** `[command, args]` that runs `cmd args` pinned to `cpu` (unpinned when `cpu` is undefined). */
export function pinned(cpu: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpu === undefined ? [cmd, args] : ['taskset', ['-c', cpu, cmd, ...args]];
}

/** A UDP port that was free a moment ago on 127.0.0.1. */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const p = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(p));
    });
  });
}

/** Description of the machine a run happened on. */
export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  node: string;
  kernel: string;
  memTotalGb: number;
  taskset: boolean;
  libcoap: string | undefined;
  openssl: string | undefined;
  commit: string | undefined;
  dirty: boolean | undefined;
}

export function machineInfo(): MachineInfo {
  let cpuModel = 'unknown';
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpuModel;
  } catch {
    /* not Linux */
  }
  const run = (cmd: string, args: string[]): string | undefined => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return r.error ? undefined : `${r.stdout}${r.stderr}`;
  };
  const libcoap = /v(\d+\.\d+\.\d+)/.exec(run('coap-server-notls', ['-?']) ?? '')?.[1];
  const openssl = run('openssl', ['version'])?.trim();
  const commit = run('git', ['rev-parse', '--short', 'HEAD'])?.trim() || undefined;
  // The bench's own outputs (regenerated at the end of a run) do not make the measured code dirty.
  const status = run('git', ['status', '--porcelain', '--untracked-files=no', '--', '.', ':!docs/benchmarks.md', ':!docs/bench-throughput.svg']);
  return {
    nproc: cpuCount(),
    cpuModel,
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    memTotalGb: round(os.totalmem() / 2 ** 30, 1),
    taskset: HAVE_TASKSET,
    libcoap,
    openssl,
    commit,
    dirty: status === undefined ? undefined : status.trim().length > 0,
  };
}

/** Wait `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
