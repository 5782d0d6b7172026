/**
 * The admin-token lifecycle (issue 14): every token has an ID recorded in the token registry; admins
 * list and revoke tokens through the API and the CLI; a revocation takes effect at the next request,
 * also on another instance of a shared PostgreSQL database; a token the registry does not know (one
 * minted by an older version) is refused; the first admin token expires after `adminTokenTtl` and is
 * replaced at start when it expired or predates the registry.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, decodeJwt } from 'jose';
import { createPrivateKey } from 'node:crypto';
import { loadConfig } from '../../src/config.ts';
import { silentLogger } from '../../src/log.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { TestPostgres } from '../support/postgres.ts';
import { assertError, call, nowS, startAdminServer, type AdminFixture } from '../support/admin-server.ts';

const CLI = join(import.meta.dirname, '../../src/cli/idprov.ts');
const TSX = join(import.meta.dirname, '../../node_modules/.bin/tsx');

/** A token signed with the server's admin key as a version before the registry minted it (a jti, but no record). */
async function legacyToken(server: RunningServer, name = 'admin', role = 'admin'): Promise<string> {
  const der = await server.store.getSetting('admin.signing-key');
  const key = createPrivateKey({ key: Buffer.from(der!, 'base64'), format: 'der', type: 'pkcs8' });
  return new SignJWT({ role }).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' }).setIssuer('idprov-admin').setSubject(name).setIssuedAt(nowS()).setJti('legacy-jti-0001').sign(key);
}

describe('admin token lifecycle', () => {
  let f: AdminFixture;
  let admin: string;
  const api = (method: string, path: string, o: Parameters<typeof call>[3] = {}) => call(f.base, method, `/api/v1${path}`, { token: admin, ...o });

  before(async () => {
    f = await startAdminServer('tok');
    admin = await f.server.auth.mint({ name: 'lifecycle', role: 'admin', ttlS: 3600 }, nowS());
  });
  after(async () => {
    await f?.close();
  });

  it('lists the tokens of the registry with their ID, role, name, state and times, never the token text', async () => {
    const hub = await f.server.auth.mintRecord({ name: 'hub-list', role: 'hub', ttlS: 600 }, nowS());
    const a = await api('GET', '/tokens?limit=1000');
    assert.equal(a.status, 200, a.text);
    const mine = a.json.items.find((t: { jti: string }) => t.jti === hub.record.jti);
    assert.ok(mine, 'the minted token is listed');
    assert.equal(mine.role, 'hub');
    assert.equal(mine.name, 'hub-list');
    assert.equal(mine.state, 'valid');
    assert.equal(Date.parse(mine.expiresAt) - Date.parse(mine.issuedAt), 600_000);
    const first = a.json.items.find((t: { name: string; role: string }) => t.name === 'admin' && t.role === 'admin');
    assert.ok(first, 'the first admin token (the token file) is listed');
    for (const text of [hub.token, admin, f.adminToken]) assert.ok(!a.text.includes(text) && !a.text.includes(text.split('.')[2]!), 'no token text or signature in the list');
  });

  it('pages through the registry by ID', async () => {
    for (let i = 0; i < 3; i++) await f.server.auth.mint({ name: `page-${i}`, role: 'hub', ttlS: 60 }, nowS());
    const all = (await api('GET', '/tokens?limit=1000')).json.items.map((t: { jti: string }) => t.jti);
    const seen: string[] = [];
    let after: string | undefined;
    for (let i = 0; i <= all.length; i++) {
      const p = await api('GET', `/tokens?limit=2${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      seen.push(...p.json.items.map((t: { jti: string }) => t.jti));
      after = p.json.next;
      if (!after) break;
    }
    assert.deepEqual(seen, all);
  });

  it('searches the registry with q: a case-insensitive part of the name or of the token ID, paged', async () => {
    const made: Array<{ jti: string }> = [];
    for (let i = 0; i < 3; i++) made.push((await f.server.auth.mintRecord({ name: `Search-Hub-${i}`, role: 'hub', ttlS: 60 }, nowS())).record);
    await f.server.auth.mint({ name: 'other-name', role: 'hub', ttlS: 60 }, nowS());
    const names = (p: { json: { items: Array<{ name: string }> } }) => p.json.items.map((t) => t.name).sort();
    assert.deepEqual(names(await api('GET', '/tokens?q=search-HUB&limit=1000')), ['Search-Hub-0', 'Search-Hub-1', 'Search-Hub-2']);
    const byJti = await api('GET', `/tokens?q=${encodeURIComponent(made[1]!.jti.slice(2, 10).toUpperCase())}`);
    assert.ok(byJti.json.items.some((t: { jti: string }) => t.jti === made[1]!.jti), byJti.text);
    assert.ok(byJti.json.items.every((t: { jti: string; name: string }) => t.jti.toLowerCase().includes(made[1]!.jti.slice(2, 10).toLowerCase()) || t.name.toLowerCase().includes(made[1]!.jti.slice(2, 10).toLowerCase())));
    const first = await api('GET', '/tokens?q=search-hub&limit=2');
    assert.equal(first.json.items.length, 2);
    assert.ok(first.json.next, 'more matches: next');
    const rest = await api('GET', `/tokens?q=search-hub&limit=2&after=${encodeURIComponent(first.json.next)}`);
    assert.deepEqual([...names(first), ...names(rest)].sort(), ['Search-Hub-0', 'Search-Hub-1', 'Search-Hub-2']);
    assert.equal(rest.json.next, undefined);
    assert.equal((await api('GET', `/tokens?q=${'x'.repeat(65)}`)).status, 400, 'q is bounded like the other lists');
  });

  it('revokes a token at once: its next request is refused (401), with the reason in the registry and the event log', async () => {
    const { token, record } = await f.server.auth.mintRecord({ name: 'doomed-hub', role: 'hub', ttlS: 3600 }, nowS());
    assert.equal((await call(f.base, 'GET', '/api/v1/devices', { token })).status, 200);
    const r = await api('POST', `/tokens/${record.jti}/revoke`, { json: { reason: 'left the company' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.state, 'revoked');
    assert.equal(r.json.revokedBy, 'admin:lifecycle');
    assert.equal(r.json.revokedReason, 'left the company');
    const refused = await call(f.base, 'GET', '/api/v1/devices', { token });
    assertError(refused, 401, 'unauthenticated');
    assert.match(refused.json.error.message, /revoked/);
    const ev = (await api('GET', '/events?limit=1000')).json.events.find((e: { kind: string; detail?: { jti?: string } }) => e.kind === 'admin.token.revoke' && e.detail?.jti === record.jti);
    assert.ok(ev, 'an admin.token.revoke event');
    assert.equal(ev.detail.reason, 'left the company');
    assert.equal((await api('GET', '/tokens?limit=1000')).json.items.find((t: { jti: string }) => t.jti === record.jti).state, 'revoked');
  });

  it('refuses a second revocation (409), an unknown ID (404), and a hub token (403)', async () => {
    const { record } = await f.server.auth.mintRecord({ name: 'twice', role: 'hub', ttlS: 3600 }, nowS());
    assert.equal((await api('POST', `/tokens/${record.jti}/revoke`)).status, 200, 'no body: no reason');
    assertError(await api('POST', `/tokens/${record.jti}/revoke`), 409, 'conflict');
    assertError(await api('POST', '/tokens/no-such-token/revoke'), 404, 'not-found');
    const hub = await f.server.auth.mint({ name: 'nosy', role: 'hub', ttlS: 3600 }, nowS());
    assertError(await call(f.base, 'GET', '/api/v1/tokens', { token: hub }), 403, 'forbidden');
    assertError(await call(f.base, 'POST', `/api/v1/tokens/${record.jti}/revoke`, { token: hub }), 403, 'forbidden');
  });

  it('takes a revocation written by another writer (the CLI, another instance) at the next request: no cache', async () => {
    const { token, record } = await f.server.auth.mintRecord({ name: 'elsewhere', role: 'admin', ttlS: 3600 }, nowS());
    assert.equal((await call(f.base, 'GET', '/api/v1/tokens', { token })).status, 200);
    await f.server.store.apply([{ kind: 'admin-token.revoke', jti: record.jti, at: nowS(), by: 'cli', reason: null }]);
    assertError(await call(f.base, 'GET', '/api/v1/tokens', { token }), 401, 'unauthenticated');
  });

  it('refuses a well-signed token the registry does not know (minted by an older version)', async () => {
    const old = await legacyToken(f.server);
    const a = await call(f.base, 'GET', '/api/v1/devices', { token: old });
    assertError(a, 401, 'unauthenticated');
    assert.match(a.json.error.message, /registry/);
  });

  it('refuses a token whose registry record names another role than the token', async () => {
    const { record } = await f.server.auth.mintRecord({ name: 'sly', role: 'hub', ttlS: 3600 }, nowS());
    // The same jti, claiming admin, signed with the server key: the registry says hub.
    const der = await f.server.store.getSetting('admin.signing-key');
    const key = createPrivateKey({ key: Buffer.from(der!, 'base64'), format: 'der', type: 'pkcs8' });
    const forged = await new SignJWT({ role: 'admin' }).setProtectedHeader({ alg: 'EdDSA' }).setIssuer('idprov-admin').setSubject('sly').setIssuedAt(nowS()).setJti(record.jti).sign(key);
    assertError(await call(f.base, 'GET', '/api/v1/tokens', { token: forged }), 401, 'unauthenticated');
  });
});

describe('the first admin token (the token file)', () => {
  it('expires after adminTokenTtl', async () => {
    const f = await startAdminServer('ttl', { adminTokenTtl: 7200 });
    try {
      const c = decodeJwt(f.adminToken);
      assert.equal(typeof c.exp, 'number');
      assert.equal(c.exp! - c.iat!, 7200);
      assert.equal((await call(f.base, 'GET', '/api/v1/tokens', { token: f.adminToken })).status, 200);
    } finally {
      await f.close();
    }
  });

  it('defaults to 30 days', () => {
    assert.equal(loadConfig({ env: {}, flags: {} }).adminTokenTtl, 30 * 86_400);
  });

  it('is kept across restarts while valid, replaced when it expired or predates the registry, and left alone when revoked', async () => {
    let clock = Date.now();
    const f = await startAdminServer('rot', { adminTokenTtl: 3600 }, () => clock);
    const cfg = loadConfig({ env: {}, flags: { dataDir: f.dataDir, coapPort: 0, coapsPort: 0, adminPort: 0, bind: '127.0.0.1', mdns: false, logLevel: 'silent', adminTokenTtl: 3600 } });
    const file = f.server.adminTokenFile;
    const read = () => readFileSync(file, 'utf8').trim();
    let s: RunningServer | undefined;
    try {
      const first = read();
      await f.server.close();
      // Valid: kept.
      s = await startServer(cfg, silentLogger, () => clock);
      assert.equal(read(), first);
      // Predates the registry: replaced by a valid one.
      writeFileSync(file, `${await legacyToken(s)}\n`);
      await s.close();
      s = await startServer(cfg, silentLogger, () => clock);
      const second = read();
      assert.notEqual(second, first);
      assert.equal((await s.auth.check(second, Math.floor(clock / 1000))).state, 'valid');
      // Expired (the clock moved past its hour): replaced.
      await s.close();
      clock += 3601_000;
      s = await startServer(cfg, silentLogger, () => clock);
      const third = read();
      assert.notEqual(third, second);
      assert.equal((await s.auth.check(third, Math.floor(clock / 1000))).state, 'valid');
      // Revoked: left as it is (an admin revoked it; a new one is a deliberate step).
      const { jti } = await s.auth.check(third, Math.floor(clock / 1000));
      await s.auth.revoke(jti!, 'rotated', { by: 'test' }, Math.floor(clock / 1000));
      await s.close();
      s = await startServer(cfg, silentLogger, () => clock);
      assert.equal(read(), third);
    } finally {
      await s?.close().catch(() => undefined);
      f.tmp && (await import('node:fs')).rmSync(f.tmp, { recursive: true, force: true });
    }
  });
});

describe('idprov token list / revoke', () => {
  /** The CLI in a child process, asynchronously: the server in this process keeps serving meanwhile. */
  const run = (args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(TSX, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
        resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      });
    });

  it('lists the tokens it minted and revokes one, which the running server then refuses', async () => {
    const f = await startAdminServer('cli');
    try {
      const made = await run(['token', 'create', '--role', 'hub', '--name', 'cli-hub', '--ttl', '1h', '-d', f.dataDir]);
      assert.equal(made.status, 0, made.stderr);
      const token = made.stdout.trim();
      const jti = /token (\S+) \(hub, cli-hub\)/.exec(made.stderr)?.[1];
      assert.ok(jti, made.stderr);
      assert.equal((await call(f.base, 'GET', '/api/v1/devices', { token })).status, 200);
      const list = await run(['token', 'list', '-d', f.dataDir]);
      assert.equal(list.status, 0, list.stderr);
      assert.match(list.stdout, new RegExp(`^${jti}\\s+hub\\s+cli-hub\\s+valid`, 'm'));
      assert.ok(!list.stdout.includes(token));
      const json = (await run(['token', 'list', '--json', '-d', f.dataDir])).stdout.trim().split('\n').map((l) => JSON.parse(l));
      assert.ok(json.some((t) => t.jti === jti && t.state === 'valid'));
      const rev = await run(['token', 'revoke', jti, '--reason', 'test over', '-d', f.dataDir]);
      assert.equal(rev.status, 0, rev.stderr);
      assertError(await call(f.base, 'GET', '/api/v1/devices', { token }), 401, 'unauthenticated');
      assert.match((await run(['token', 'list', '-d', f.dataDir])).stdout, new RegExp(`^${jti}\\s+hub\\s+cli-hub\\s+revoked.*cli: test over`, 'm'));
      const again = await run(['token', 'revoke', jti, '-d', f.dataDir]);
      assert.notEqual(again.status, 0);
      assert.match(again.stderr, /already revoked/);
    } finally {
      await f.close();
    }
  });
});

describe('token revocation across instances on one PostgreSQL database', function () {
  this.timeout(120_000);
  let pg: TestPostgres;
  const servers: RunningServer[] = [];
  const dirs: string[] = [];
  before(async function () {
    pg = await TestPostgres.start();
  });
  after(async () => {
    await Promise.all(servers.map((s) => s.close().catch(() => undefined)));
    await pg?.stop();
    for (const d of dirs) (await import('node:fs')).rmSync(d, { recursive: true, force: true });
  });

  it('refuses at instance B, at its next request, a token revoked through instance A', async () => {
    const url = pg.createDatabase('tokens');
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    for (let i = 0; i < 2; i++) {
      const dir = mkdtempSync(join(tmpdir(), 'idprov-tok-pg-'));
      dirs.push(dir);
      const cfg = loadConfig({ env: {}, flags: { dataDir: join(dir, 'data'), store: 'postgres', databaseUrl: url, coapPort: 0, coapsPort: 0, adminPort: 0, bind: '127.0.0.1', mdns: false, logLevel: 'silent', instanceName: `tok-${i}` } });
      servers.push(await startServer(cfg, silentLogger));
    }
    const [a, b] = servers as [RunningServer, RunningServer];
    const adminA = readFileSync(a.adminTokenFile, 'utf8').trim();
    const { token, record } = await a.auth.mintRecord({ name: 'roaming-hub', role: 'hub', ttlS: 3600 }, nowS());
    const atB = () => call(`http://127.0.0.1:${b.adminPort}`, 'GET', '/api/v1/devices', { token });
    assert.equal((await atB()).status, 200, 'B knows the token A minted');
    assert.equal((await call(`http://127.0.0.1:${a.adminPort}`, 'POST', `/api/v1/tokens/${record.jti}/revoke`, { token: adminA })).status, 200);
    assertError(await atB(), 401, 'unauthenticated', 'B, right after the revocation at A');
  });
});
