/**
 * Store-level cost of a provisioning's commit (issue 16): SQLite (file, synchronous=FULL) vs the
 * PostgreSQL store with 1 and 2 stores (instances) on one private database (test/support/postgres.ts).
 * Each "provisioning" is the group the service writes for an allowlisted device: allow.consume,
 * device.upsert, nonce.use and the provision.approved event, 64 in flight per store.
 * Run: `nice npx tsx tools/bench/scale-out-store.ts [count]` (prints one line per setup).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PostgresStore } from '../../src/store/postgres/store.ts';
import { SqliteStore } from '../../src/store/sqlite/store.ts';
import type { Mutation, Store } from '../../src/store/store.ts';
import { TestPostgres } from '../../test/support/postgres.ts';

const N = Number(process.argv[2] ?? 3000);
const T0 = 1_700_000_000;

function provisioning(id: string): Mutation[] {
  return [
    { kind: 'allow.consume', id, at: T0 },
    { kind: 'device.upsert', device: { id, pk: randomBytes(32), type: 0, via: 'allowlist', provisionedAt: T0, lastSeen: T0, source: '192.0.2.1:5683' } },
    { kind: 'nonce.use', nonce: randomBytes(24), expires: T0 + 60 },
    { kind: 'event', event: { at: T0, kind: 'provision.approved', deviceId: id, actor: 'device', detail: { via: 'allowlist' } } },
  ];
}

async function run(label: string, stores: Store[]): Promise<void> {
  const ids = Array.from({ length: N }, (_, i) => `bench-${i}`);
  await stores[0]!.apply(ids.map((id) => ({ kind: 'allow.upsert', entry: { id, pk: randomBytes(32), type: 0, createdAt: T0 } })));
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await Promise.all(
    stores.flatMap((s) =>
      Array.from({ length: 64 }, async () => {
        while (next < N) await s.apply(provisioning(ids[next++]!));
      }),
    ),
  );
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  console.log(`${label}: ${Math.round(N / s)} provisionings/s, ${(((cpu.user + cpu.system) / N) / 1000).toFixed(3)} ms node CPU each (${N} in ${s.toFixed(2)} s)`);
}

const dir = mkdtempSync(join(tmpdir(), 'idprov-bench-'));
const pg = await TestPostgres.start();
try {
  const sqlite = await SqliteStore.open(join(dir, 'idprov.db'));
  await run('sqlite, 1 store', [sqlite]);
  await sqlite.close();
  const one = await PostgresStore.open(pg.createDatabase('bench'));
  await run('postgres, 1 store', [one]);
  await one.close();
  const url = pg.createDatabase('bench');
  const two = [await PostgresStore.open(url), await PostgresStore.open(url)];
  await run('postgres, 2 stores', two);
  await Promise.all(two.map((s) => s.close()));
} finally {
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
}
