/**
 * The "more than one core" lever of issue 17, measured: what moving Ed25519 verification (the largest
 * single cost of a provisioning) to worker threads would give. For W = 0 (on the main thread), 1 and 2
 * workers, with 16 verifications in flight as the server has at N=16, it reports:
 * - verifications per second (wall);
 * - CPU per verification, process-wide (all threads), and on the main thread alone (what the event
 *   loop would still spend: posting the job and taking the answer).
 * Each worker keeps its own KeyObject cache, as the server's main thread does; a job carries the raw
 * key, message and signature (copied, ~200 bytes) and comes back as a boolean.
 *
 *   taskset -c 0 npx tsx tools/bench/ab/verify-workers.ts [--rounds 5] [--ms 1500]      (one core)
 *   taskset -c 0,1 npx tsx tools/bench/ab/verify-workers.ts                               (two cores)
 *
 * Rounds alternate W = 0, 1, 2; every round is printed, then the medians.
 */
import { readFileSync } from 'node:fs';
import { createHash, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';

const IN_FLIGHT = 16;
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function keyOf(cache: Map<string, KeyObject>, raw: Buffer): KeyObject {
  const k = raw.toString('latin1');
  let ko = cache.get(k);
  if (!ko) {
    ko = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
    cache.set(k, ko);
  }
  return ko;
}

/** The worker: plain JavaScript (a worker does not inherit the tsx loader), the same steps as keyOf. */
const WORKER_JS = `
const { createPublicKey, verify } = require('node:crypto');
const { parentPort } = require('node:worker_threads');
const prefix = Buffer.from('${SPKI_PREFIX.toString('hex')}', 'hex');
const cache = new Map();
parentPort.on('message', (m) => {
  const raw = Buffer.from(m.pk);
  const k = raw.toString('latin1');
  let ko = cache.get(k);
  if (!ko) cache.set(k, (ko = createPublicKey({ key: Buffer.concat([prefix, raw]), format: 'der', type: 'spki' })));
  parentPort.postMessage({ id: m.id, ok: verify(null, m.msg, ko, m.sig) });
});
`;

{
  const arg = (name: string, def: number) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : def;
  };
  const rounds = arg('--rounds', 5);
  const ms = arg('--ms', 1500);

  // 1,000 devices, each a key and a signed ~130-byte message, as requests would bring them.
  const jobs = Array.from({ length: 1000 }, (_, i) => {
    const kp = generateKeyPairSync('ed25519');
    const pk = kp.publicKey.export({ type: 'spki', format: 'der' }).subarray(12);
    const msg = Buffer.concat([createHash('sha512').update(`req-${i}`).digest(), createHash('sha512').update(`body-${i}`).digest().subarray(0, 66)]);
    return { pk: Buffer.from(pk), msg, sig: sign(null, msg, kp.privateKey) };
  });

  // Time on a CPU of the main thread (its task id is the process id), in ns (schedstat's first field).
  const mainCpuUs = (): number => Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1000;

  const cache = new Map<string, KeyObject>();
  const onMain = (j: (typeof jobs)[number]) => Promise.resolve(verify(null, j.msg, keyOf(cache, j.pk), j.sig));

  function pool(n: number) {
    const workers = Array.from({ length: n }, () => new Worker(WORKER_JS, { eval: true }));
    const waiting = new Map<number, (ok: boolean) => void>();
    for (const w of workers) w.on('message', (m: { id: number; ok: boolean }) => (waiting.get(m.id)!(m.ok), waiting.delete(m.id)));
    let next = 0;
    return {
      run: (j: (typeof jobs)[number]) =>
        new Promise<boolean>((resolve) => {
          const id = next++;
          waiting.set(id, resolve);
          workers[id % n]!.postMessage({ id, pk: j.pk, msg: j.msg, sig: j.sig });
        }),
      close: () => Promise.all(workers.map((w) => w.terminate())),
    };
  }

  async function round(run: (j: (typeof jobs)[number]) => Promise<boolean>): Promise<{ perS: number; cpuUs: number; mainUs: number }> {
    let done = 0;
    let bad = 0;
    const c0 = process.cpuUsage();
    const m0 = mainCpuUs();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async (_, lane) => {
        for (let k = lane; performance.now() - t0 < ms; k += IN_FLIGHT) {
          if (!(await run(jobs[k % jobs.length]!))) bad++;
          done++;
        }
      }),
    );
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    if (bad > 0) throw new Error(`${bad} verifications failed`);
    return { perS: (done / wall) * 1000, cpuUs: (c.user + c.system) / done, mainUs: (mainCpuUs() - m0) / done };
  }

  const pools = { 1: pool(1), 2: pool(2) };
  const runners: Record<number, (j: (typeof jobs)[number]) => Promise<boolean>> = { 0: onMain, 1: pools[1].run, 2: pools[2].run };
  for (const w of [0, 1, 2]) await round(runners[w]!); // warm-up: JIT, key caches, worker start
  const res: Record<number, { perS: number; cpuUs: number; mainUs: number }[]> = { 0: [], 1: [], 2: [] };
  for (let r = 1; r <= rounds; r++) {
    for (const w of r % 2 ? [0, 1, 2] : [2, 1, 0]) {
      const x = await round(runners[w]!);
      res[w]!.push(x);
      console.log(`round ${r} workers=${w}: ${x.perS.toFixed(0)}/s  cpu ${x.cpuUs.toFixed(1)} µs/verify (main thread ${x.mainUs.toFixed(1)})`);
    }
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`\nmedians of ${rounds} rounds, ${IN_FLIGHT} in flight:`);
  for (const w of [0, 1, 2]) {
    const xs = res[w]!;
    console.log(`  workers=${w}: ${med(xs.map((x) => x.perS)).toFixed(0)}/s  cpu ${med(xs.map((x) => x.cpuUs)).toFixed(1)} µs/verify  main thread ${med(xs.map((x) => x.mainUs)).toFixed(1)} µs/verify`);
  }
  await Promise.all([pools[1].close(), pools[2].close()]);
}
