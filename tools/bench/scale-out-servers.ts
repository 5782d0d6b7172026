/**
 * Full-server provisioning throughput (issue 16): allowlisted devices provisioned over CoAP (challenge,
 * then the signed request) through real server processes (test/support/server-child.ts): SQLite with
 * one instance, PostgreSQL (a private server, test/support/postgres.ts) with one and two instances.
 * Prints provisionings/s, the server processes' CPU per provisioning and PostgreSQL's CPU per
 * provisioning (its backends, from /proc). The load generator runs on the same 2 cores.
 * Run: `nice npx tsx tools/bench/scale-out-servers.ts [devices] [concurrency]`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseResponse } from '../../src/protocol/messages.ts';
import { coapRequest } from '../../test/support/coap-client.ts';
import { TestDevice } from '../../test/support/device.ts';
import { TestPostgres } from '../../test/support/postgres.ts';

const N = Number(process.argv[2] ?? 600);
const CONCURRENCY = Number(process.argv[3] ?? 32);
const TICK = 100; // USER_HZ

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
  const proc = spawn(process.execPath, ['--import', 'tsx', 'test/support/server-child.ts', JSON.stringify(flags)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const line = await new Promise<string>((res, rej) => {
    createInterface({ input: proc.stdout! }).once('line', res);
    proc.once('exit', (c) => rej(new Error(`server exited ${c}`)));
  });
  return { proc, port: (JSON.parse(line) as { port: number }).port };
}

async function provisionAll(ports: number[], devs: TestDevice[]): Promise<number> {
  let next = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
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

async function run(label: string, store: Record<string, unknown>, instances: number, dir: string, pm?: number): Promise<void> {
  const devs = Array.from({ length: N }, (_, i) => new TestDevice(`b-${label.replace(/\W/g, '')}-${i}`));
  const allow = join(dir, `${label.replace(/\W/g, '')}.csv`);
  writeFileSync(allow, `id,pk\n${devs.map((d) => `${d.id},${d.pk.toString('hex')}`).join('\n')}\n`);
  const base = (k: number) => ({ dataDir: join(dir, `${label.replace(/\W/g, '')}-${k}`), coapPort: 0, coapsPort: 0, adminPort: 0, bind: '127.0.0.1', mdns: false, rateBurstAddress: 1_000_000, rateLimitAddress: 1_000_000, ...store });
  const servers = [await start({ ...base(0), allowlist: allow })];
  for (let k = 1; k < instances; k++) servers.push(await start(base(k)));
  try {
    const cpu0 = servers.map((s) => cpuTicks(s.proc.pid!));
    const pg0 = pm ? pgTicks(pm) : 0;
    const t0 = process.hrtime.bigint();
    const failed = await provisionAll(servers.map((s) => s.port), devs);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = servers.reduce((a, srv, k) => a + cpuTicks(srv.proc.pid!) - cpu0[k]!, 0);
    const pgCpu = pm ? pgTicks(pm) - pg0 : 0;
    const ms = (ticks: number) => ((ticks / TICK) * 1000) / N;
    console.log(
      `${label}: ${Math.round(N / s)} provisionings/s, server CPU ${ms(cpu).toFixed(2)} ms each` +
        (pm ? `, PostgreSQL CPU ${ms(pgCpu).toFixed(2)} ms each` : '') +
        ` (${N} devices, ${CONCURRENCY} in flight, ${s.toFixed(1)} s${failed ? `, ${failed} without token` : ''})`,
    );
  } finally {
    for (const srv of servers) srv.proc.kill('SIGKILL');
  }
}

const dir = mkdtempSync(join(tmpdir(), 'idprov-bench-srv-'));
const pg = await TestPostgres.start();
try {
  const pm = Number(readFileSync(join(pg.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  await run('sqlite, 1 instance', { store: 'sqlite' }, 1, dir);
  await run('postgres, 1 instance', { store: 'postgres', databaseUrl: pg.createDatabase('bench') }, 1, dir, pm);
  await run('postgres, 2 instances', { store: 'postgres', databaseUrl: pg.createDatabase('bench') }, 2, dir, pm);
} finally {
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
}
