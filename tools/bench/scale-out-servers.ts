/**
 * Scenario 9 — full-server provisioning through several instances (issue 16): allowlisted devices
 * provisioned over CoAP (challenge, then the signed request) through real server processes
 * (test/support/server-child.ts): SQLite with one instance, PostgreSQL (a private server,
 * test/support/postgres.ts) with one and two instances. Per run: provisionings/s, the server
 * processes' CPU per provisioning and PostgreSQL's CPU per provisioning (the postmaster and its
 * backends, from /proc) — what the database costs. Servers are not pinned (two instances need the two
 * cores) and the devices run in the bench process on the same cores, so this compares the three set-ups
 * with each other, in one run, not with the pinned scenarios.
 *
 * In the bench: `npm run bench -- --only 9` (part of every run). Alone:
 * `nice npx tsx tools/bench/scale-out-servers.ts [devices] [concurrency]`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseResponse } from '../../src/protocol/messages.ts';
import { coapRequest } from '../../test/support/coap-client.ts';
import { TestDevice } from '../../test/support/device.ts';
import { postgresBinDir, TestPostgres } from '../../test/support/postgres.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TICK = 100; // USER_HZ

export interface ScaleOutRun {
  label: string;
  store: 'sqlite' | 'postgres';
  instances: number;
  devices: number;
  concurrency: number;
  seconds: number;
  perSec: number;
  /** CPU of the idprov processes per provisioning (µs). */
  serverCpuUs: number;
  /** CPU of PostgreSQL (postmaster and backends) per provisioning (µs); PostgreSQL runs only. */
  dbCpuUs?: number;
  /** serverCpuUs + dbCpuUs. */
  totalCpuUs: number;
  /** Devices that got no token (should be 0). */
  failed: number;
}

export interface S9 {
  runs: ScaleOutRun[];
  /** Why PostgreSQL was not measured, when it was not. */
  note?: string;
  command: string;
}

function cpuTicks(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
  } catch {
    return 0;
  }
}

/** CPU ticks of the postmaster `pm` and its children so far (backends live as long as their pool). */
function pgTicks(pm: number): number {
  let t = cpuTicks(pm);
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ');
      if (Number(f[1]) === pm) t += Number(f[11]) + Number(f[12]);
    } catch {
      // gone
    }
  }
  return t;
}

async function start(flags: Record<string, unknown>): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'test/support/server-child.ts', JSON.stringify(flags)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const line = await new Promise<string>((res, rej) => {
    createInterface({ input: proc.stdout! }).once('line', res);
    proc.once('exit', (c) => rej(new Error(`server exited ${c}`)));
  });
  return { proc, port: (JSON.parse(line) as { port: number }).port };
}

async function provisionAll(ports: number[], devs: TestDevice[], concurrency: number): Promise<number> {
  let next = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      while (next < devs.length) {
        const i = next++;
        const dev = devs[i]!;
        const port = ports[(i + w) % ports.length]!;
        const post = async (payload: Buffer) => parseResponse((await coapRequest({ port, method: 'POST', path: '/idprov/request', payload, contentFormat: 18 })).payload);
        const ch = await post(dev.request());
        const r = await post(dev.request({ nonce: ch.nonce! }));
        if (r.token === undefined) {
          failed++;
          if (failed <= 3) console.error(`no token for ${dev.id} at ${port}: ${JSON.stringify(r)}`);
        }
      }
    }),
  );
  return failed;
}

async function run(label: string, store: Record<string, unknown>, instances: number, dir: string, n: number, concurrency: number, pm?: number): Promise<ScaleOutRun> {
  const tag = label.replace(/\W/g, '');
  const devs = Array.from({ length: n }, (_, i) => new TestDevice(`b-${tag}-${i}`));
  const warm = Array.from({ length: Math.min(100, Math.ceil(n / 4)) }, (_, i) => new TestDevice(`w-${tag}-${i}`));
  const allow = join(dir, `${tag}.csv`);
  writeFileSync(allow, `id,pk\n${[...warm, ...devs].map((d) => `${d.id},${d.pk.toString('hex')}`).join('\n')}\n`);
  const base = (k: number) => ({ dataDir: join(dir, `${tag}-${k}`), coapPort: 0, coapsPort: 0, adminPort: 0, bind: '127.0.0.1', mdns: false, rateBurstAddress: 1_000_000, rateLimitAddress: 1_000_000, manyIdsThreshold: 100_000, ...store });
  const servers = [await start({ ...base(0), allowlist: allow })];
  try {
    for (let k = 1; k < instances; k++) servers.push(await start(base(k)));
    // Warm-up (not measured): the first provisionings of a fresh process pay for JIT compilation and,
    // with PostgreSQL, for opening the pool's connections.
    await provisionAll(
      servers.map((s) => s.port),
      warm,
      concurrency,
    );
    const cpu0 = servers.map((s) => cpuTicks(s.proc.pid!));
    const pg0 = pm ? pgTicks(pm) : 0;
    const t0 = process.hrtime.bigint();
    const failed = await provisionAll(
      servers.map((s) => s.port),
      devs,
      concurrency,
    );
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = servers.reduce((a, srv, k) => a + cpuTicks(srv.proc.pid!) - cpu0[k]!, 0);
    const us = (ticks: number) => Math.round(((ticks / TICK) * 1e6) / n);
    const serverCpuUs = us(cpu);
    const dbCpuUs = pm ? us(pgTicks(pm) - pg0) : undefined;
    return {
      label,
      store: store['store'] as 'sqlite' | 'postgres',
      instances,
      devices: n,
      concurrency,
      seconds: Math.round(seconds * 100) / 100,
      perSec: Math.round(n / seconds),
      serverCpuUs,
      ...(dbCpuUs !== undefined ? { dbCpuUs } : {}),
      totalCpuUs: serverCpuUs + (dbCpuUs ?? 0),
      failed,
    };
  } finally {
    for (const srv of servers) srv.proc.kill('SIGKILL');
  }
}

/** The three set-ups, one after the other, `devices` provisionings each with `concurrency` in flight. */
export async function scaleOut(o: { devices: number; concurrency: number; log?: (m: string) => void }): Promise<S9> {
  const log = o.log ?? console.log;
  const dir = mkdtempSync(join(tmpdir(), 'idprov-bench-srv-'));
  const runs: ScaleOutRun[] = [];
  const say = (r: ScaleOutRun) =>
    log(`  S9 ${r.label}: ${r.perSec} provisionings/s, server CPU ${r.serverCpuUs} µs each${r.dbCpuUs !== undefined ? `, PostgreSQL CPU ${r.dbCpuUs} µs each` : ''} (${r.devices} devices, ${r.concurrency} in flight, ${r.seconds} s${r.failed ? `, ${r.failed} without token` : ''})`);
  const command = `nice npx tsx tools/bench/scale-out-servers.ts ${o.devices} ${o.concurrency}`;
  try {
    runs.push(await run('SQLite, 1 instance', { store: 'sqlite' }, 1, dir, o.devices, o.concurrency));
    say(runs.at(-1)!);
    if (!postgresBinDir()) return { runs, note: 'PostgreSQL not installed (npm run test:setup installs it)', command };
    const pg = await TestPostgres.start();
    try {
      const pm = Number(readFileSync(join(pg.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
      for (const k of [1, 2]) {
        runs.push(await run(`PostgreSQL, ${k} instance${k > 1 ? 's' : ''}`, { store: 'postgres', databaseUrl: pg.createDatabase('bench') }, k, dir, o.devices, o.concurrency, pm));
        say(runs.at(-1)!);
      }
    } finally {
      await pg.stop();
    }
    return { runs, command };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await scaleOut({ devices: Number(process.argv[2] ?? 600), concurrency: Number(process.argv[3] ?? 32) });
}
