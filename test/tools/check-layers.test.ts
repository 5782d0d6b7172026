/**
 * The layer check can fail (issue 15): the review planted nine kinds of violation and the old per-line
 * regex passed all of them. Each kind is planted here in a fixture tree (a few files written to a
 * temporary folder, so the test does not depend on how src/ is split today) or in a copy of the real
 * src/, and must fail with its own message; the real tree must pass.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkLayers, EXCEPTIONS, ROOMS, roomOf } from '../../tools/check-layers.mjs';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const tool = join(repo, 'tools/check-layers.mjs');

const made: string[] = [];
function tree(files: Record<string, string>, base?: string): string {
  const root = mkdtempSync(join(tmpdir(), 'layers-'));
  made.push(root);
  if (base) cpSync(join(base, 'src'), join(root, 'src'), { recursive: true });
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  }
  return root;
}
after(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** The problems of a tree; asserts that at least one matches every pattern. */
function fails(root: string, ...patterns: RegExp[]): string[] {
  const { problems } = checkLayers(root);
  assert.ok(problems.length > 0, 'the planted violation passed the check');
  for (const p of patterns)
    assert.ok(
      problems.some((m) => p.test(m)),
      `no problem matches ${p}; got:\n${problems.join('\n')}`,
    );
  return problems;
}

const clean = (root: string) => assert.deepEqual(checkLayers(root).problems, []);

describe('tools/check-layers.mjs', () => {
  it('passes on the real tree (and says so with exit code 0)', () => {
    const { problems, nodes } = checkLayers(repo);
    assert.deepEqual(problems, []);
    assert.ok(nodes.size > 50, `only ${nodes.size} files read`);
    const out = execFileSync(process.execPath, [tool], { encoding: 'utf8' });
    assert.match(out, /layer check: ok/);
  });

  it('covers every file of src/ with a rule, and every rule says why', () => {
    for (const n of checkLayers(repo).nodes.values()) assert.ok(n.room, `${n.rel} has no rule`);
    for (const r of ROOMS) assert.ok(r.why.length > 20, `${r.room} has no reason`);
    for (const room of ['protocol', 'net', 'policy', 'tokens', 'errors', 'domain', 'service', 'device-api', 'transport', 'discovery', 'admin', 'cli', 'config', 'server', 'log'])
      assert.ok(ROOMS.some((r) => r.room === room), `no rule for ${room}`);
    assert.equal(roomOf('src/store/sqlite/writer.ts')?.room, 'store-sqlite', 'a folder rule covers its subfolders');
    assert.equal(roomOf('src/store/sqlite.ts')?.room, 'store-sqlite');
    assert.equal(roomOf('src/store/memory/store.ts')?.room, 'store-memory');
    assert.equal(roomOf('src/store/store.ts')?.room, 'store-seam');
    assert.equal(roomOf('src/device-api/resources/token.ts')?.room, 'device-api');
    assert.equal(roomOf('src/log-pretty.ts')?.room, 'log');
    assert.equal(roomOf('src/domain/errors.ts')?.room, 'errors');
  });

  it('1. a file in a room without a rule fails', () => {
    fails(tree({ 'src/newroom/thing.ts': 'export const x = 1;\n' }), /src\/newroom\/thing\.ts: no layer rule covers this file/);
  });

  it('2. admin may not pick a store engine, nor read tokens', () => {
    const root = tree({
      'src/store/sqlite/store.ts': 'export class SqliteStore {}\n',
      'src/tokens/keyring.ts': 'export const k = 1;\n',
      'src/admin/routes.ts': "import { SqliteStore } from '../store/sqlite/store.ts';\nimport { k } from '../tokens/keyring.ts';\nexport const s = [SqliteStore, k];\n",
    });
    fails(root, /src\/admin\/routes\.ts:1: adapter chosen below the composition root: admin imports the concrete store-sqlite/, /src\/admin\/routes\.ts:2: admin may not import tokens .*thin HTTP layer over the service/);
  });

  it('3. store: the seam speaks domain types only, an engine knows no other engine, nothing in store imports upward', () => {
    const root = tree({
      'src/store/store.ts': "import { readFileSync } from 'node:fs';\nexport const r = readFileSync;\n",
      'src/store/sqlite/store.ts': 'export class SqliteStore {}\n',
      'src/store/postgres/store.ts': "import { SqliteStore } from '../sqlite/store.ts';\nexport const s = SqliteStore;\n",
      'src/service/provisioning.ts': 'export const p = 1;\n',
      'src/store/copy.ts': "import { p } from '../service/provisioning.ts';\nexport const c = p;\n",
    });
    fails(
      root,
      /src\/store\/store\.ts:1: store-seam may not import node:fs .*domain types only/,
      /src\/store\/postgres\/store\.ts:1: store-postgres may not import store-sqlite/,
      /src\/store\/copy\.ts:1: store may not import service/,
    );
  });

  it('4. discovery knows the transport, not provisioning; its pure files do no I/O', () => {
    const root = tree({
      'src/service/provisioning.ts': 'export const p = 1;\n',
      'src/discovery/advertiser.ts': "import { p } from '../service/provisioning.ts';\nexport const a = p;\n",
      'src/discovery/records.ts': "import dgram from 'node:dgram';\nexport const d = dgram;\n",
    });
    fails(root, /src\/discovery\/advertiser\.ts:1: discovery may not import service/, /src\/discovery\/records\.ts:1: discovery-pure may not import node:dgram/, /the pure room discovery-pure reaches I\/O \(node:dgram\)/);
  });

  it('5. config imports no upper room; 6. nothing imports the composition root; 7. nothing imports the CLI', () => {
    const root = tree({
      'src/admin/sidecar.ts': 'export const a = 1;\n',
      'src/config.ts': "import { a } from './admin/sidecar.ts';\nexport const c = a;\n",
      'src/server.ts': 'export const start = 1;\n',
      'src/service/admin.ts': "import { start } from '../server.ts';\nexport const x = start;\n",
      'src/cli/idprov.ts': 'export const main = 1;\n',
      'src/transport/dtls/psk.ts': "import { main } from '../../cli/idprov.ts';\nexport const y = main;\n",
    });
    fails(
      root,
      /src\/config\.ts:1: upward import: config \(rank 3\) imports admin/,
      /src\/config\.ts:1: config may not import admin/,
      /src\/service\/admin\.ts:1: upward import: service .* imports server/,
      /src\/transport\/dtls\/psk\.ts:1: upward import: transport .* imports cli/,
    );
  });

  it('8. transitive: policy → config.ts → node:fs fails in a copy of the real tree', () => {
    const root = tree({ 'src/policy/planted.ts': "import { SETTINGS } from '../config.ts';\nexport const s = SETTINGS;\n" }, repo);
    fails(root, /src\/policy\/planted\.ts: the pure room policy reaches I\/O \(node:fs\) through src\/policy\/planted\.ts → src\/config\.ts → node:fs/, /src\/policy\/planted\.ts:1: policy may not import config/);
  });

  it('8b. transitive through two rooms: policy → protocol → a file that reads a file', () => {
    const root = tree({
      'src/protocol/codec.ts': "export { readFileSync } from 'node:fs';\n",
      'src/policy/decide.ts': "import { readFileSync } from '../protocol/codec.ts';\nexport const r = readFileSync;\n",
    });
    const problems = fails(root, /src\/policy\/decide\.ts: the pure room policy reaches I\/O \(node:fs\) through src\/policy\/decide\.ts → src\/protocol\/codec\.ts → node:fs/, /src\/protocol\/codec\.ts:1: protocol may not import node:fs \(export from\)/);
    // the edge policy → protocol itself is allowed: the failure at policy is only the path
    assert.ok(!problems.some((m) => /policy\/decide\.ts:1:/.test(m)), problems.join('\n'));
  });

  it('8c. transitive: a pure room reaching a clock in an impure file fails', () => {
    const root = tree({
      'src/log.ts': "export const stamp = () => Date.now();\n",
      'src/protocol/cbor.ts': "import { stamp } from '../log.ts';\nexport const s = stamp;\n",
    });
    fails(root, /src\/protocol\/cbor\.ts: the pure room protocol reaches the clock through src\/protocol\/cbor\.ts → src\/log\.ts \(src\/log\.ts:1: Date\.now/);
  });

  it('9. dynamic import(), require and createRequire are followed; computed specifiers are refused', () => {
    const root = tree({
      'src/protocol/a.ts': "export const load = () => import('node:fs');\n",
      'src/policy/b.ts': "import { createRequire } from 'node:module';\nconst req = createRequire(import.meta.url);\nexport const fs = req('node:fs');\n",
      'src/tokens/c.ts': "const name = 'fs';\nexport const m = () => import(name);\n",
      'src/net/d.ts': "export const n = require('node:net');\n",
    });
    fails(
      root,
      /src\/protocol\/a\.ts:1: protocol may not import node:fs \(import\(\)\)/,
      /src\/protocol\/a\.ts: the pure room protocol reaches I\/O \(node:fs\)/,
      /src\/policy\/b\.ts:3: policy may not import node:fs \(require\)/,
      /src\/tokens\/c\.ts:2: import\(\) with a computed specifier cannot be checked/,
      /src\/net\/d\.ts:1: net may not import node:net \(require\)/,
    );
  });

  it('10. clock access in a pure room fails, aliases included', () => {
    const cases: [string, RegExp][] = [
      ['export const t = Date.now();', /Date\.now reads the clock/],
      ['export const t = new Date();', /new Date\(\) without an argument/],
      ['export const t = new Date;', /new Date\(\) without an argument/],
      ['export const t = performance.now();', /performance reads the clock/],
      ['export const t = process.hrtime.bigint();', /process\.hrtime/],
      ['export const t = process.hrtime();', /process\.hrtime/],
      ['const d = Date;\nexport const t = d.now();', /Date used as a value/],
      ['const { now } = Date;\nexport const t = now();', /Date used as a value/],
      ["export const t = Date['now']();", /Date\.now reads the clock/],
      ['export const t = globalThis.Date.now();', /Date\.now reads the clock/],
      ['const p = performance;\nexport const t = p.now();', /performance reads the clock/],
      ['export const t = (f: () => number = Date.now) => f();', /Date\.now reads the clock/],
      ['export const t = (f: (cb: () => void) => void = setTimeout) => f;', /setTimeout is a timer/],
    ];
    for (const [code, re] of cases) {
      const root = tree({ 'src/policy/clock.ts': `${code}\n` });
      const { problems } = checkLayers(root);
      assert.ok(problems.some((m) => /src\/policy\/clock\.ts:\d+: clock access in the pure room policy/.test(m) && re.test(m)), `${code} passed:\n${problems.join('\n')}`);
    }
    // the service reads no clock either (it is injected)
    fails(tree({ 'src/service/flow.ts': 'export const t = () => Date.now();\n' }), /src\/service\/flow\.ts:1: clock access in the clock-free room service: Date\.now/);
  });

  it('10b. a given time is not a clock read', () => {
    clean(
      tree({
        'src/policy/time.ts': [
          'export const a = (ms: number) => new Date(ms).toISOString();',
          "export const b = Date.UTC(2026, 0, 1) + Date.parse('2026-01-01T00:00:00Z');",
          'export const c = (x: unknown): x is Date => x instanceof Date;',
          'export type D = Date;',
          'export const e = (d: Date, f: typeof Date.now) => [d, f];',
          'export const o = { Date: 1 }.Date;',
          '',
        ].join('\n'),
      }),
    );
  });

  it('11. upward imports fail, type-only ones too', () => {
    const root = tree({
      'src/service/provisioning.ts': 'export interface Outcome { ok: boolean }\nexport const p = 1;\n',
      'src/transport/coap/engine.ts': "import type { Outcome } from '../../service/provisioning.ts';\nexport type O = Outcome;\n",
      'src/protocol/messages.ts': "import { p } from '../service/provisioning.ts';\nexport const m = p;\n",
    });
    fails(
      root,
      /src\/transport\/coap\/engine\.ts:1: .*transport may not import service .*type-only import/,
      /src\/protocol\/messages\.ts:1: upward import: protocol \(rank 1\) imports service \(rank 4/,
    );
  });

  it('12. an adapter chosen below the composition root fails; the composition root may choose it', () => {
    const root = tree({
      'src/store/store.ts': 'export interface Store { get(): void }\n',
      'src/store/sqlite/store.ts': "import type { Store } from '../store.ts';\nexport class SqliteStore implements Store { get() {} }\n",
      'src/transport/coap/udp.ts': 'export class UdpTransport {}\n',
      'src/service/provisioning.ts': "import { SqliteStore } from '../store/sqlite/store.ts';\nexport const s = new SqliteStore();\n",
      'src/device-api/token.ts': "import { UdpTransport } from '../transport/coap/udp.ts';\nexport const u = new UdpTransport();\n",
      'src/server.ts': "import { SqliteStore } from './store/sqlite/store.ts';\nimport { UdpTransport } from './transport/coap/udp.ts';\nexport const x = [SqliteStore, UdpTransport];\n",
    });
    const problems = fails(
      root,
      /src\/service\/provisioning\.ts:1: adapter chosen below the composition root: service imports the concrete store-sqlite/,
      /src\/device-api\/token\.ts:1: adapter chosen below the composition root: device-api imports the concrete transport-udp/,
    );
    assert.ok(!problems.some((m) => m.startsWith('src/server.ts')), problems.join('\n'));
  });

  it('13. type-only edges count for direction, not for purity: naming a type of an adapter is fine', () => {
    clean(
      tree({
        'src/transport/coap/udp.ts': "import dgram from 'node:dgram';\nexport class UdpTransport { s = dgram }\n",
        'src/discovery/index.ts': "import type { UdpTransport } from '../transport/coap/udp.ts';\nexport type U = UdpTransport;\n",
        'src/store/store.ts': 'export interface Store { get(): void }\n',
        'src/admin/metrics.ts': "import type { Store } from '../store/store.ts';\nexport type S = Store;\n",
      }),
    );
    // but `import { type X }` loads the module under verbatimModuleSyntax: a value edge
    fails(
      tree({
        'src/transport/coap/udp.ts': 'export class UdpTransport {}\n',
        'src/service/x.ts': "import { type UdpTransport } from '../transport/coap/udp.ts';\nexport type U = UdpTransport;\n",
      }),
      /src\/service\/x\.ts:1: adapter chosen below the composition root/,
    );
  });

  it('14. export … from is an edge; an import from outside src/ fails', () => {
    const root = tree({
      'test/helper.ts': 'export const h = 1;\n',
      'src/policy/x.ts': "export { readFile } from 'node:fs/promises';\n",
      'src/service/y.ts': "import { h } from '../../test/helper.ts';\nexport const z = h;\n",
    });
    fails(root, /src\/policy\/x\.ts:1: policy may not import node:fs\/promises \(export from\)/, /src\/service\/y\.ts:1: imports test\/helper\.ts from outside src\//);
  });

  it('a documented exception lets one edge through, and a stale one is only a warning', () => {
    const files = {
      'src/tokens/keyring.ts': 'export const k = 1;\n',
      'src/admin/sidecar.ts': "import { k } from '../tokens/keyring.ts';\nexport const s = k;\n",
    };
    const exceptions = [
      { from: 'src/admin/sidecar.ts', to: 'tokens', why: 'planted' },
      { from: 'src/admin/gone.ts', to: 'tokens', why: 'planted stale' },
    ];
    const r = checkLayers(tree(files), { exceptions });
    assert.deepEqual(r.problems, []);
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0] ?? '', /stale exception src\/admin\/gone\.ts/);
    assert.ok(checkLayers(tree(files), { exceptions: [] }).problems.length > 0);
    for (const e of EXCEPTIONS) assert.match(e.why, /issue \d+/, 'every exception names the issue that removes it');
  });

  it('exits 1 and lists the violation when run on a planted tree', () => {
    const root = tree({ 'src/policy/x.ts': 'export const t = Date.now();\n' });
    const r = spawnSync(process.execPath, [tool, '--root', root], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /layer check: 1 violation\(s\)\nsrc\/policy\/x\.ts:1: clock access/);
  });
});
