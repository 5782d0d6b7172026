/**
 * The store's write path alone, without the network or crypto: CPU per `apply` call of a
 * provisioning-shaped group (device row, allowlist consumption, event), with the group written as
 * one statement (the default) and statement by statement (`groupStatement: false`), for groups of
 * 1 and 16 calls, rounds alternating. A file database in WAL mode with synchronous=FULL, as served.
 *
 *   npx tsx tools/bench/store.ts [--calls 20000] [--rounds 3]
 *
 * Pin it for steadier figures: `taskset -c 0 npx tsx tools/bench/store.ts`. CPU is the process's
 * (every thread, so SQLite's thread pool and the fsyncs' system time count).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../src/store/sqlite/store.ts';
import type { Mutation } from '../../src/store/store.ts';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const CALLS = arg('--calls', 20_000);
const ROUNDS = arg('--rounds', 3);
const T0 = 1_800_000_000;

function approval(i: number): Mutation[] {
  const id = `dev-${i}`;
  return [
    { kind: 'device.upsert', device: { id, pk: new Uint8Array(32).fill(i & 0xff), type: 0, via: 'allowlist', provisionedAt: T0, lastSeen: T0, source: '192.0.2.1:5683', lastCti: '00112233aabbccdd', tokenExp: T0 + 3600 } },
    { kind: 'allow.consume', id, at: T0 },
    { kind: 'event', event: { at: T0, kind: 'provision.approved', deviceId: id, actor: 'device', source: '192.0.2.1:5683', detail: { via: 'allowlist', cti: '00112233aabbccdd', exp: T0 + 3600 } } },
  ];
}

async function measure(groupStatement: boolean, group: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'idprov-store-bench-'));
  const store = await SqliteStore.open(join(dir, 'db.sqlite'), { groupStatement });
  try {
    await store.apply(Array.from({ length: CALLS }, (_, i): Mutation => ({ kind: 'allow.upsert', entry: { id: `dev-${i}`, pk: new Uint8Array(32).fill(i & 0xff), type: 0, createdAt: T0 } })));
    const c0 = process.cpuUsage();
    for (let i = 0; i < CALLS; i += group) {
      await Promise.all(Array.from({ length: Math.min(group, CALLS - i) }, (_, k) => store.apply(approval(i + k))));
    }
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / CALLS;
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const results: Record<string, number[]> = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const group of [1, 16]) {
    for (const one of [true, false]) {
      const k = `group of ${String(group).padStart(2)}, ${one ? 'one statement   ' : 'statement by statement'}`;
      (results[k] ??= []).push(await measure(one, group));
    }
  }
}
const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
console.log(`CPU per apply() call (µs), median of ${ROUNDS} rounds of ${CALLS} calls (all rounds in brackets):`);
for (const [k, v] of Object.entries(results)) console.log(`  ${k}: ${median(v).toFixed(0).padStart(4)}  [${v.map((x) => x.toFixed(0)).join(', ')}]`);
