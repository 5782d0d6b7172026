/**
 * The package as npm users get it: `npm pack` the repository, install the tarball into an empty
 * folder with production dependencies only, and there run `idprov serve`, `oob status` and
 * `device-sim provision` against each other. Also checks what the tarball holds (no test, fixture,
 * key or database file) and that nothing of the development tools (tsx, TypeScript) is needed.
 *
 * Slow: the install builds sqlite3 from source (~2 min on a shared 2-core machine); npm's cache is
 * reused for everything else.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../support/temp-dir.ts';
import { run, serve, type Served } from '../support/processes.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

/** The environment without what `npm test` sets for its own run (npm_config_*, npm_lifecycle_*). */
const cleanEnv = (): NodeJS.ProcessEnv => Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string; size: number }[];
}

/** Files that must never ship. */
const FORBIDDEN: readonly [RegExp, string][] = [
  [/^test\//, 'a test'],
  [/^fixtures\//, 'a fixture'],
  [/^\.ci\//, 'CI scripts'],
  [/^tools\/(bench|dtls-peers)\//, 'development tools'],
  [/\.(test|spec)\.[cm]?[jt]s$/, 'a test'],
  [/(^|\/)data\//, 'a data folder'],
  [/\.(db|db-wal|db-shm|sqlite|sqlite3)$/, 'a database'],
  [/\.(pem|key|crt|p12)$/, 'a key or certificate'],
  [/(^|\/)admin\.token$/, 'an admin token'],
  [/\.(c|h)$/, 'C sources'],
  [/(^|\/)\.tsbuildinfo$|\.build-stamp$/, 'build bookkeeping'],
  [/\.ts$/, 'TypeScript source (the package runs dist/)'],
];

describe('the npm package (npm pack, installed with production dependencies only)', function () {
  this.timeout(900_000);
  const t = tempDir('idprov-pack-');
  let pack: PackResult;
  let prefix: string;
  let server: Served | undefined;
  const bin = (name: string): string => join(prefix, 'node_modules', '.bin', name);

  before(() => {
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', t.dir], { cwd: ROOT, encoding: 'utf8', env: cleanEnv(), maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
    // `prepare` (the build) prints before the JSON.
    pack = (JSON.parse(out.slice(out.indexOf('[\n'))) as PackResult[])[0]!;
    prefix = join(t.dir, 'app');
    mkdirSync(prefix);
  });
  after(async () => {
    await server?.stop();
    t.cleanup();
  });

  it('holds no test, fixture, key or database file, and everything the bins need at run time', () => {
    const paths = pack.files.map((f) => f.path);
    for (const p of paths) for (const [re, what] of FORBIDDEN) assert.ok(!re.test(p), `${p} is ${what}`);
    for (const need of ['bin/idprov.js', 'bin/oob.js', 'bin/device-sim.js', 'dist/src/cli/idprov.js', 'dist/tools/oob/main.js', 'dist/tools/device-sim/main.js', 'dist/src/admin/page.html', 'dist/src/admin/page.js', 'dist/src/admin/page.css', 'package.json', 'README.md', 'LICENSE', 'deploy/idprov.service', 'deploy/idprov.example.json']) {
      assert.ok(paths.includes(need), `${need} is in the tarball`);
    }
    console.log(`      tarball ${pack.filename}: ${pack.size} bytes, ${pack.entryCount} files, ${pack.unpackedSize} bytes unpacked`);
  });

  it('names tsx and TypeScript as development dependencies only, and every bin\'s imports as dependencies', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    for (const dev of ['tsx', 'typescript']) {
      assert.ok(!(dev in pkg.dependencies), `${dev} is not a run-time dependency`);
      assert.ok(dev in pkg.devDependencies);
    }
    assert.ok('coap' in pkg.dependencies, 'device-sim imports coap');
  });

  it('installs into an empty folder with production dependencies only, without an engine warning', () => {
    const r = run('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', join(t.dir, pack.filename)], { cwd: prefix, env: cleanEnv(), timeoutMs: 840_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /EBADENGINE/);
    for (const dev of ['tsx', 'typescript', 'mocha']) assert.ok(!existsSync(join(prefix, 'node_modules', dev)), `${dev} is not installed`);
    const du = run('du', ['-sk', join(prefix, 'node_modules')]);
    console.log(`      installed node_modules: ${du.stdout.split('\t')[0]} KiB`);
  });

  it('prints its version from every bin', () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const b of ['idprov', 'oob', 'device-sim']) {
      const r = run(bin(b), ['--version'], { cwd: prefix });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), version);
    }
  });

  it('serves, answers oob status, and provisions a device-sim device from an allowlist', async () => {
    const data = join(prefix, 'data');
    server = await serve(bin('idprov'), ['serve', '--data', data, '--coap-port', '0', '--coaps-port', '0', '--admin-port', '0', '--bind', '127.0.0.1', '--no-mdns', '--log-format', 'json'], { cwd: prefix });
    const status = run(bin('oob'), ['status', '--server', server.admin, '--data', data, '--json'], { cwd: prefix });
    assert.equal(status.status, 0, status.stderr);
    assert.equal((JSON.parse(status.stdout) as { provisioning: { enabled: boolean } }).provisioning.enabled, true);

    const key = join(prefix, 'dev1.key');
    const kg = run(bin('device-sim'), ['keygen', '--key', key, '--json'], { cwd: prefix });
    assert.equal(kg.status, 0, kg.stderr);
    const { pk } = JSON.parse(kg.stdout) as { pk: string };
    const csv = join(prefix, 'mine.csv');
    writeFileSync(csv, `id,pk\npacked-01,${pk}\n`);
    const imp = run(bin('oob'), ['import', csv, '--server', server.admin, '--data', data], { cwd: prefix });
    assert.equal(imp.status, 0, imp.stderr);

    const prov = run(bin('device-sim'), ['provision', '--server', `coap://127.0.0.1:${server.coap}`, '--id', 'packed-01', '--key', key, '--json'], { cwd: prefix });
    assert.equal(prov.status, 0, prov.stderr + prov.stdout);
    const res = JSON.parse(prov.stdout.trim().split('\n').pop()!) as { status: string; tokenBytes: number };
    assert.equal(res.status, 'approved');
    assert.ok(res.tokenBytes > 100);
    assert.equal(await server.stop(), 0);
    server = undefined;
  });
});
