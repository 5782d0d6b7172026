/**
 * The SQLite store's commit tail alone (issue 17), without CoAP or crypto: `apply` calls of a
 * provisioning's mutations (device row, allowlist consumption, event) at a fixed open-loop rate, each
 * a fresh device, into a file database; prints per round the latency of `apply` (p50, p99, max, calls
 * over 10 ms), this process's CPU per call, and the WAL's high-water mark. With --ab DIR the rounds
 * alternate between DIR's build (A; another checkout, already built) and this tree's (B); both run
 * in this process, one after the other. Run it pinned to one core, as the server is:
 *   taskset -c 0 npx tsx tools/bench/ab/commit-tail.ts [ROUNDS=3] [--rate R (650)] [--seconds S (10)] [--ab DIR]
 *     [--checkpoint-ms MS] [--restart-frames N] (this tree's checkpointer policy) [--delay-ms MS (groupCommitMaxDelayMs, both)]
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Mutation } from '../../../src/store/store.ts';

interface StoreLike {
  apply(m: readonly Mutation[]): Promise<void>;
  close(): Promise<void>;
}
type Open = (path: string) => Promise<StoreLike>;

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const rounds = Number(args.find((a, i) => /^\d+$/.test(a) && (i === 0 || !args[i - 1]!.startsWith('--'))) ?? 3);
const rate = Number(opt('--rate') ?? 650);
const seconds = Number(opt('--seconds') ?? 10);
const abRoot = opt('--ab');
const delayMs = opt('--delay-ms') !== undefined ? Number(opt('--delay-ms')) : undefined;
// This tree's checkpointer policy (checkpointer.ts); an older build ignores the option.
const checkpoint = {
  ...(opt('--checkpoint-ms') ? { everyMs: Number(opt('--checkpoint-ms')) } : {}),
  ...(opt('--restart-frames') ? { restartFrames: Number(opt('--restart-frames')) } : {}),
};

async function opener(root: string): Promise<Open> {
  const mod = (await import(pathToFileURL(join(resolve(root), 'dist/src/store/sqlite/store.js')).href)) as { SqliteStore: { open: (p: string, o: object) => Promise<StoreLike> } };
  return (p) => mod.SqliteStore.open(p, { checkpoint, ...(delayMs !== undefined ? { groupCommitMaxDelayMs: delayMs } : {}) });
}

const T0 = 1_700_000_000;
const pk = new Uint8Array(32).fill(7);

async function round(open: Open): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'idprov-commit-tail-'));
  const path = join(dir, 'idprov.db');
  const store = await open(path);
  try {
    const total = Math.ceil(rate * seconds);
    // The allowlist entries the calls consume, in one call (as an import would).
    const allow: Mutation[] = [];
    for (let i = 0; i < total; i++) allow.push({ kind: 'allow.upsert', entry: { id: `dev-${i}`, pk, type: 0, createdAt: T0 } });
    await store.apply(allow);
    const lat = new Float64Array(total);
    let done = 0;
    let issued = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await new Promise<void>((finish) => {
      const tick = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000));
        while (issued < due) {
          const i = issued++;
          const start = performance.now();
          const id = `dev-${i}`;
          void store
            .apply([
              { kind: 'device.upsert', device: { id, pk, type: 0, via: 'allowlist', provisionedAt: T0, lastSeen: T0, source: '127.0.0.1:5683', lastCti: '0011223344556677', tokenExp: T0 + 3600 } },
              { kind: 'allow.consume', id, at: T0 },
              { kind: 'event', event: { at: T0, kind: 'provision.approved', deviceId: id, actor: 'device', source: '127.0.0.1:5683', detail: { via: 'allowlist', cti: '0011223344556677', exp: T0 + 3600 } } },
            ])
            .then(() => {
              lat[i] = performance.now() - start;
              if (++done === total) finish();
            });
        }
        if (issued === total) clearInterval(tick);
      }, 1);
    });
    const cpu = process.cpuUsage(cpu0);
    const s = Float64Array.from(lat).sort();
    const at = (q: number): string => s[Math.min(total - 1, Math.floor(q * total))]!.toFixed(2);
    const over10 = s.filter((v) => v > 10).length;
    const wal = statSync(`${path}-wal`).size;
    return `p50_ms=${at(0.5)} p99_ms=${at(0.99)} max_ms=${s[total - 1]!.toFixed(1)} over10ms=${over10} cpu_us_per_call=${((cpu.user + cpu.system) / total).toFixed(0)} (sys ${(cpu.system / total).toFixed(0)}) wal_mb=${(wal / 2 ** 20).toFixed(1)}`;
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const variants: Array<{ name: string; open: Open }> = [];
if (abRoot) variants.push({ name: 'A', open: await opener(abRoot) });
variants.push({ name: abRoot ? 'B' : '-', open: await opener('.') });
for (let r = 1; r <= rounds; r++) {
  for (const v of r % 2 === 1 ? variants : [...variants].reverse()) {
    console.log(`round ${r} ${v.name} rate=${rate}/s calls=${Math.ceil(rate * seconds)} ${await round(v.open)}`);
  }
}
