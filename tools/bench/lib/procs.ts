/**
 * The processes of a benchmark run: the idprov server (`bin/idprov.js serve`), the bare engine server,
 * libcoap's example servers, the load generator. Each is pinned with `taskset -c` when possible and
 * stopped by its own pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import type { Job, Reply } from './jobs.ts';
import { freeTcpPort, freeUdpPort, pinned, sleep } from './sys.ts';

export const ROOT = resolve(new URL('../../..', import.meta.url).pathname);

/** Every child started here, so that none outlives the orchestrator (killed by pid on exit). */
const children = new Set<ChildProcess>();
export function track(c: ChildProcess): ChildProcess {
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}
process.on('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    process.exitCode = 130;
    process.exit();
  });
}

/** Stop a child we started: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

/** Wait for a line matching `re` on the child's stdout (or fail when it exits / after `ms`). */
function waitLine(child: ChildProcess, re: RegExp, ms: number, what: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const m = re.exec(buf);
      if (m) {
        cleanup();
        resolve(m);
      } else if (buf.length > 1 << 16) buf = buf.slice(-4096);
    };
    const onExit = (c: number | null): void => {
      cleanup();
      reject(new Error(`${what} exited (${c}) before it was ready: ${buf.slice(-500)}`));
    };
    const t = setTimeout(() => {
      cleanup();
      reject(new Error(`${what} not ready after ${ms} ms`));
    }, ms);
    const cleanup = (): void => {
      clearTimeout(t);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      child.stdout?.resume();
    };
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}

// ------------------------------------------------------------------------------------------------

export interface IdprovServer {
  child: ChildProcess;
  pid: number;
  dataDir: string;
  coapPort: number;
  coapsPort: number;
  adminPort: number;
  adminToken: string;
  /** The command line, for the report. */
  command: string;
  stop(): Promise<void>;
}

/** Environment that keeps a benchmark server off the network's discovery (mDNS, CoAP multicast). */
export const QUIET_ENV = { IDPROV_MDNS: 'false', IDPROV_COAP_MULTICAST: 'false', IDPROV_ROGUE_MONITOR: 'false' };

/**
 * Every simulated device sends from 127.0.0.1, which the security monitor would (rightly) treat as
 * one address with thousands of device IDs: 4.29 past 50 requests/s and a `many-ids` flag past 50
 * IDs a minute, and 20 new DTLS handshakes per second (`dtlsHandshakeRate`, burst 40: past it the
 * ClientHello is dropped and the client waits for its 1 s retransmission, so scenario 4 measured ≈ 17
 * handshakes/s at N=16 with a 1 s median until this was raised). The per-address limits are raised
 * to their maxima (not switched off, so their bookkeeping stays in the measured cost); per-device
 * limits keep their defaults.
 */
export const LOOPBACK_ENV = {
  IDPROV_RATE_LIMIT_ADDRESS: '1000000',
  IDPROV_RATE_BURST_ADDRESS: '10000000',
  IDPROV_MANY_IDS_THRESHOLD: '100000',
  IDPROV_DTLS_HANDSHAKE_RATE: '1000000',
  IDPROV_DTLS_HANDSHAKE_BURST: '1000000',
};

/**
 * Start `node bin/idprov.js serve` on a fresh (or given) data directory, pinned to `cpu`, and wait
 * for its admin sidecar to answer. `root`: the checkout whose bin/ and dist/ run (default: this one;
 * another one's for an A/B, e.g. tools/bench/ab/s2-rounds.ts --ab).
 */
export async function startIdprov(opts: { cpu: string | undefined; dataDir?: string; env?: Record<string, string>; logLevel?: string; nodeArgs?: string[]; root?: string }): Promise<IdprovServer> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'idprov-bench-'));
  const coapPort = await freeUdpPort();
  let coapsPort = await freeUdpPort();
  while (coapsPort === coapPort) coapsPort = await freeUdpPort();
  const adminPort = await freeTcpPort();
  const args = ['bin/idprov.js', 'serve', '--data', dataDir, '--coap-port', String(coapPort), '--coaps-port', String(coapsPort), '--admin-port', String(adminPort), '--bind', '127.0.0.1', '--log-level', opts.logLevel ?? 'warn'];
  const [cmd, argv] = pinned(opts.cpu, process.execPath, [...(opts.nodeArgs ?? []), ...args]);
  const child = track(spawn(cmd, argv, { cwd: opts.root ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...QUIET_ENV, ...LOOPBACK_ENV, ...opts.env } }));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  child.stdout!.on('data', (d: Buffer) => {
    // Warnings and errors the server logs during a benchmark go to our stderr, shortened.
    const s = d.toString().trim();
    if (s) process.stderr.write(`  [idprov] ${s.slice(0, 400)}\n`);
  });
  const deadline = Date.now() + 60_000;
  let token = '';
  for (;;) {
    if (child.exitCode !== null) throw new Error(`idprov exited (${child.exitCode}): ${stderr}`);
    if (Date.now() > deadline) {
      await stopChild(child);
      throw new Error(`idprov did not start within 60 s: ${stderr}`);
    }
    try {
      token ||= readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
      const r = await fetch(`http://127.0.0.1:${adminPort}/api/v1/health`);
      if (r.ok && token) break;
    } catch {
      /* not up yet */
    }
    await sleep(100);
  }
  return {
    child,
    pid: child.pid!,
    dataDir,
    coapPort,
    coapsPort,
    adminPort,
    adminToken: token,
    command: `${Object.entries({ ...QUIET_ENV, ...LOOPBACK_ENV, ...opts.env }).filter(([k]) => k !== 'IDPROV_NONCE_SECRET').map(([k, v]) => `${k}=${v}`).join(' ')} ${opts.cpu !== undefined ? `taskset -c ${opts.cpu} ` : ''}node ${args.join(' ')}`,
    async stop() {
      await stopChild(child);
      if (opts.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Import allowlist rows (CSV lines without the header) through the admin sidecar. */
export async function importCsv(s: IdprovServer, header: string, lines: Iterable<string>): Promise<{ rows: number; added: number; ms: number }> {
  function* chunks(): Generator<string> {
    yield `${header}\n`;
    let c = '';
    for (const l of lines) {
      c += `${l}\n`;
      if (c.length > 1 << 16) {
        yield c;
        c = '';
      }
    }
    if (c) yield c;
  }
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${s.adminPort}/api/v1/allowlist`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.adminToken}`, 'content-type': 'text/csv' },
    body: Readable.toWeb(Readable.from(chunks())) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  const body = (await res.json()) as { rows?: number; added?: number; imported?: boolean };
  if (!res.ok || body.imported !== true) throw new Error(`allowlist import failed (${res.status}): ${JSON.stringify(body).slice(0, 500)}`);
  return { rows: body.rows ?? 0, added: body.added ?? 0, ms: performance.now() - t0 };
}

// ------------------------------------------------------------------------------------------------

export interface SimpleServer {
  child: ChildProcess;
  pid: number;
  port: number;
  command: string;
  stop(): Promise<void>;
}

/** Scenario 1's bare engine server (tools/bench/engine-server.ts). */
export async function startEngineServer(cpu: string | undefined, payload: Buffer, maxAge: number | undefined): Promise<SimpleServer> {
  const port = await freeUdpPort();
  const args = ['--import', 'tsx', 'tools/bench/engine-server.ts'];
  const [cmd, argv] = pinned(cpu, process.execPath, args);
  const child = track(spawn(cmd, argv, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, BENCH_PORT: String(port), BENCH_PAYLOAD_HEX: payload.toString('hex'), BENCH_MAX_AGE: maxAge === undefined ? '' : String(maxAge) },
  }));
  await waitLine(child, /ready (\d+)/, 30_000, 'engine-server');
  return { child, pid: child.pid!, port, command: `${cpu !== undefined ? `taskset -c ${cpu} ` : ''}node ${args.join(' ')}`, stop: () => stopChild(child) };
}

/**
 * A libcoap example server (`coap-server-notls` / `coap-server-openssl`) on 127.0.0.1. With DTLS
 * libraries it also listens for DTLS on port+1 (`dtlsPort`). Ready once it answers a GET.
 */
export async function startLibcoap(binary: string, cpu: string | undefined, extra: string[] = []): Promise<SimpleServer & { dtlsPort: number }> {
  // libcoap binds UDP and TCP on `port` and, with (D)TLS, port+1: find two free consecutive ports.
  let port = 0;
  for (let tries = 0; tries < 20; tries++) {
    const p = await freeUdpPort();
    if (p < 65000) {
      port = p;
      break;
    }
  }
  const args = ['-A', '127.0.0.1', '-p', String(port), '-v', '0', ...extra];
  const [cmd, argv] = pinned(cpu, binary, args);
  const child = track(spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] }));
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-2000);
  });
  // Ready when it answers a CoAP ping (CON Empty → RST) on the UDP port.
  const { createSocket } = await import('node:dgram');
  const sock = createSocket('udp4');
  try {
    const ok = await new Promise<boolean>((resolve) => {
      const t0 = Date.now();
      let settled = false;
      sock.on('message', () => {
        settled = true;
        resolve(true);
      });
      sock.on('error', () => undefined);
      const ping = (): void => {
        if (settled) return;
        if (child.exitCode !== null || Date.now() - t0 > 10_000) {
          settled = true;
          return resolve(false);
        }
        sock.send(Buffer.from([0x40, 0, 0x12, 0x34]), port, '127.0.0.1');
        setTimeout(ping, 100);
      };
      ping();
    });
    if (!ok) {
      await stopChild(child);
      throw new Error(`${binary} did not start: ${err}`);
    }
  } finally {
    sock.close();
  }
  return { child, pid: child.pid!, port, dtlsPort: port + 1, command: `${cpu !== undefined ? `taskset -c ${cpu} ` : ''}${binary} ${args.join(' ')}`, stop: () => stopChild(child) };
}

// ------------------------------------------------------------------------------------------------

/** The load generator process (tools/bench/loadgen.ts), one job at a time over IPC. */
export class LoadGenerator {
  private waiting: ((r: Reply) => void) | undefined;
  private constructor(
    readonly child: ChildProcess,
    readonly command: string,
  ) {
    child.on('message', (m: Reply) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.(m);
    });
    child.on('exit', (c) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.({ ok: false, error: `the load generator exited (${c})` });
    });
  }

  static async start(cpu: string | undefined): Promise<LoadGenerator> {
    const args = ['--import', 'tsx', 'tools/bench/loadgen.ts'];
    const [cmd, argv] = pinned(cpu, process.execPath, args);
    const child = track(spawn(cmd, argv, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    const g = new LoadGenerator(child, `${cpu !== undefined ? `taskset -c ${cpu} ` : ''}node ${args.join(' ')}`);
    const first = await new Promise<Reply>((r) => (g.waiting = r));
    if (!first.ok) throw new Error(first.error);
    return g;
  }

  get pid(): number {
    return this.child.pid!;
  }

  run(job: Job): Promise<Reply> {
    if (this.waiting) throw new Error('the load generator is busy');
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.child.send(job);
    });
  }

  async stop(): Promise<void> {
    if (this.child.connected) this.child.send({ kind: 'exit' } satisfies Job);
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    if (this.child.exitCode === null && this.child.signalCode === null) await new Promise((r) => this.child.once('exit', r));
    clearTimeout(t);
  }
}
