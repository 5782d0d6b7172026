/**
 * Benchmark: allowlist bulk import through the admin sidecar (docs/architecture.md "Performance targets": 1,000,000 entries in
 * ≤ 15 s, server RSS ≤ 300 MB). Starts `idprov serve` as a child process on a fresh data directory,
 * streams a generated CSV to POST /api/v1/allowlist, and reads the server's peak RSS (VmHWM).
 *
 *   npx tsx tools/bench/import.ts [--rows 1000000] [--json out.json]
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';

export interface ImportBenchResult {
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  peakRssMb: number;
  baselineRssMb: number;
  added: number;
}

function* csv(rows: number): Generator<string> {
  yield 'id,pk,mac\n';
  let chunk = '';
  for (let i = 0; i < rows; i++) {
    const pk = createHash('sha256').update(`bench-${i}`).digest('hex');
    const mac = (0x240ac4000000 + i).toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');
    chunk += `sensor-${String(i).padStart(7, '0')},${pk},${mac}\n`;
    if (chunk.length > 1 << 16) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}

const vm = (pid: number, field: 'VmHWM' | 'VmRSS'): number => {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};

/** Options of {@link benchImport}. */
export interface ImportBenchOptions {
  /** Pin the server process to this CPU list with `taskset -c` (the benchmark gives it its own core). */
  serverCpu?: string;
}

export async function benchImport(rows: number, opts: ImportBenchOptions = {}): Promise<ImportBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'idprov-bench-import-'));
  const args = ['bin/idprov.js', 'serve', '--data', dir, '--coap-port', '0', '--coaps-port', '0', '--admin-port', '0', '--bind', '127.0.0.1', '--log-level', 'info'];
  const [cmd, argv] = opts.serverCpu !== undefined ? ['taskset', ['-c', opts.serverCpu, process.execPath, ...args]] : [process.execPath, args];
  const child = spawn(cmd, argv, {
    stdio: ['ignore', 'pipe', 'inherit'],
    // A benchmark announces nothing on the network.
    env: { ...process.env, IDPROV_MDNS: 'false', IDPROV_COAP_MULTICAST: 'false', IDPROV_ROGUE_MONITOR: 'false' },
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const m = /"admin":"http:\/\/[^:]+:(\d+)"/.exec(buf);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (c) => reject(new Error(`server exited ${c}`)));
    });
    child.stdout.resume();
    const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
    const baselineRssMb = vm(child.pid!, 'VmRSS');
    const t0 = performance.now();
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/allowlist`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'text/csv' },
      body: Readable.toWeb(Readable.from(csv(rows))) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
    const body = (await res.json()) as { added: number; rows: number; imported: boolean };
    const seconds = (performance.now() - t0) / 1000;
    if (!body.imported || body.rows !== rows) throw new Error(`import failed: ${JSON.stringify(body).slice(0, 500)}`);
    const peakRssMb = vm(child.pid!, 'VmHWM');
    return { rows, seconds, rowsPerSecond: rows / seconds, peakRssMb, baselineRssMb, added: body.added };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--rows');
  const rows = i > 0 ? Number(process.argv[i + 1]) : 1_000_000;
  const r = await benchImport(rows);
  console.log(JSON.stringify(r, null, 2));
}
