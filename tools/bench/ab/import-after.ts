/**
 * Server CPU an allowlist import causes after its answer (issue 17: scenario 2 imports its devices
 * just before each window, so that work lands in the window). Two idle servers (A = --ab DIR, another
 * checkout, already built; B = this tree's dist/); each round imports 4,500 more key-only entries
 * through the sidecar into each (order alternating) and prints the server's CPU (all threads,
 * schedstat) during the import, over the 1.5 s after its answer, and over the 1.5 s after that (idle).
 *   flock /tmp/bench.lock npx tsx tools/bench/ab/import-after.ts --ab DIR [ROUNDS=8]
 */
import { randomBytes } from 'node:crypto';
import { importCsv, startIdprov } from '../lib/procs.ts';
import { pinning, threadsCpuNs as ns } from '../lib/sys.ts';
const args = process.argv.slice(2);
const ab = args[args.indexOf('--ab') + 1]!;
const rounds = Number(args.find((a) => /^\d+$/.test(a)) ?? 8);
const cpu = pinning();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const servers = [
  { name: 'A', srv: await startIdprov({ cpu: cpu.server, root: ab }) },
  { name: 'B', srv: await startIdprov({ cpu: cpu.server }) },
];
let serial = 0;
try {
  await sleep(2000);
  for (let r = 1; r <= rounds; r++) {
    for (const { name, srv } of r % 2 ? servers : [...servers].reverse()) {
      const lines: string[] = [];
      for (let i = 0; i < 4500; i++) lines.push(`imp-${serial++},${randomBytes(32).toString('hex')}`);
      const c0 = ns(srv.pid);
      const imp = await importCsv(srv, 'id,pk', lines);
      const c1 = ns(srv.pid);
      await sleep(1500);
      const c2 = ns(srv.pid);
      await sleep(1500);
      const c3 = ns(srv.pid);
      console.log(`round ${r} ${name} entries=${r * 4500} import_ms_cpu=${((c1 - c0) / 1e6).toFixed(1)} after_1.5s_ms_cpu=${((c2 - c1) / 1e6).toFixed(1)} next_1.5s_idle_ms_cpu=${((c3 - c2) / 1e6).toFixed(1)} (import ${imp.ms.toFixed(0)} ms wall)`);
    }
  }
} finally {
  for (const { srv } of servers) await srv.stop();
}
