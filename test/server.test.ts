/**
 * The composition root (src/server.ts) loads the PostgreSQL adapter, and with it `pg`, only when the
 * store is `postgres` (issue 15): an SQLite install never loads it. Checked in a fresh process (this
 * one has loaded `pg` for other tests), by the CommonJS module cache `pg` lands in when imported.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tempDir } from './support/temp-dir.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Run `body` (an ES module) in a fresh Node process with tsx; returns its stdout. */
function fresh(body: string): string {
  return execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', body], { cwd: ROOT, encoding: 'utf8' });
}

const PG_LOADED = `
import { createRequire } from 'node:module';
const pgModules = () => Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('/node_modules/pg/')).length;
`;

describe('the composition root (src/server.ts)', function () {
  this.timeout(60_000);

  it('opens an SQLite store without loading pg, and loads it for the PostgreSQL store', () => {
    const t = tempDir();
    try {
      const out = fresh(`${PG_LOADED}
        const { openStore } = await import('./src/server.ts');
        const { loadConfig } = await import('./src/config.ts');
        const { silentLogger } = await import('./src/log.ts');
        const store = await openStore(loadConfig({ flags: { dataDir: ${JSON.stringify(t.dir)} } }), silentLogger);
        await store.close();
        console.log(pgModules());
        await import('./src/store/postgres/store.ts');
        console.log(pgModules());
      `);
      const [sqlite, postgres] = out.trim().split('\n').map(Number);
      assert.equal(sqlite, 0, 'no module of pg after opening the SQLite store');
      assert.ok(postgres! > 0, `the check sees pg once the PostgreSQL store is imported (${postgres})`);
    } finally {
      t.cleanup();
    }
  });
});
