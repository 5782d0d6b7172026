/**
 * What loading the DTLS-PSK index costs with a large allowlist (issue 17): fills a fresh SQLite store
 * with ROWS entries (one in SECRET_EVERY with a printed secret), then times PskIndex reloads (wall and
 * this process's CPU, which includes SQLite's pool threads).
 *   npx tsx tools/bench/ab/psk-load.ts [--rows 1000000] [--secret-every 10] [--rounds 3]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PskIndex } from '../../../src/service/psk-index.ts';
import { SqliteStore } from '../../../src/store/sqlite/store.ts';
import type { AllowEntry } from '../../../src/domain.ts';

const arg = (name: string, d: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : d;
};
const rows = arg('--rows', 1_000_000);
const every = arg('--secret-every', 10);
const rounds = arg('--rounds', 3);
const dir = mkdtempSync(join(tmpdir(), 'psk-load-'));
try {
  const store = await SqliteStore.open(join(dir, 'idprov.db'));
  const staging = await store.stageAllow();
  const now = Math.floor(Date.now() / 1000);
  for (let i = 0; i < rows; i += 10_000) {
    const batch: AllowEntry[] = [];
    for (let j = i; j < Math.min(rows, i + 10_000); j++) {
      const pk = new Uint8Array(32);
      pk[0] = j & 255; pk[1] = (j >> 8) & 255; pk[2] = (j >> 16) & 255;
      batch.push(j % every === 0 ? { id: `sensor-${String(j).padStart(7, '0')}`, secret: `printed-secret-${j}`, type: 0, createdAt: now } : { id: `sensor-${String(j).padStart(7, '0')}`, pk, type: 0, createdAt: now });
    }
    await staging.write(batch);
  }
  await store.bulkUpsertAllow(staging);
  await staging.discard();
  const index = new PskIndex(store, () => now);
  for (let r = 1; r <= rounds; r++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await index.reload();
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    console.log(`round ${r} rows=${rows} secrets=${index.size} wall_ms=${ms.toFixed(0)} cpu_ms=${((c.user + c.system) / 1000).toFixed(0)} rss_mb=${(process.memoryUsage().rss / 2 ** 20).toFixed(0)}`);
  }
  await store.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
