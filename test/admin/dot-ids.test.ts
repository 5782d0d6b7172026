/**
 * Device IDs "." and ".." (security review F10): no longer valid (a request naming one gets 4.00),
 * but an older database may hold them, and they stay manageable through the `~` + `?id=` form of
 * every record route, by the API, `oob` and (test/admin/browser.test.ts) the page. IDs with other
 * URL-reserved characters travel percent-encoded.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { keyFingerprint } from '../../src/tokens/ed25519.ts';
import { recordPath } from '../../tools/oob/client.ts';
import { assertError, call, nowS, startAdminServer, type AdminFixture } from '../support/admin-server.ts';

const BIN = new URL('../../bin/oob.js', import.meta.url).pathname;

function oob(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.end();
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A GET with the path sent exactly as given (node:http does not collapse dot segments, as curl --path-as-is). */
function rawGet(base: string, path: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(base);
    const req = request({ host: u.hostname, port: u.port, path, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('device IDs "." and ".." (F10)', () => {
  let f: AdminFixture;
  let conn: string[];
  const pk = new Uint8Array(32).fill(9);
  const api = (method: string, path: string, json?: unknown) => call(f.base, method, `/api/v1${path}`, { token: f.adminToken, ...(json !== undefined ? { json } : {}) });

  before(async () => {
    f = await startAdminServer('dot');
    const tokenFile = join(f.tmp, 'dot.token');
    writeFileSync(tokenFile, `${f.adminToken}\n`, { mode: 0o600 });
    conn = ['--server', f.base, '--token-file', tokenFile];
    const now = nowS();
    // What an older database may hold: records under the IDs "." and "..".
    await f.server.store.apply([
      { kind: 'device.upsert', device: { id: '..', pk, type: 0, via: 'admin', provisionedAt: now, lastSeen: now } },
      { kind: 'device.upsert', device: { id: '.', pk, type: 0, via: 'admin', provisionedAt: now, lastSeen: now } },
      { kind: 'pending.upsert', pending: { id: '.', pk, type: 0, source: '127.0.0.1:1', firstSeen: now, lastSeen: now, count: 1, status: 'pending' } },
      { kind: 'allow.upsert', entry: { id: '..', mac: new Uint8Array(6).fill(1), type: 0, createdAt: now } },
    ]);
  });
  after(async () => f?.close());

  it('answers a request that names the device ID ".." with 4.00', async () => {
    for (const id of ['.', '..']) {
      const c = f.device();
      (c as unknown as { id: string }).id = id;
      const r = await c.provision();
      assert.equal(r.code, '4.00', JSON.stringify(r));
    }
  });

  it('gets, revokes and re-enables a provisioned ".." with ~ and the id query parameter', async () => {
    assert.equal((await api('GET', '/devices/~?id=..')).json.id, '..');
    assert.equal((await api('POST', '/devices/~/revoke?id=..', { reason: 'old record' })).status, 204);
    assert.equal((await f.server.store.getRevocation('..'))?.reason, 'old record');
    assert.equal((await f.server.store.getRevocation('.')), undefined, 'only ".." was revoked');
    assert.equal((await api('POST', '/devices/~/enable?id=..')).status, 204);
    assert.equal(await f.server.store.getRevocation('..'), undefined);
  });

  it('approves a pending "." and deletes an allowlist entry ".." the same way', async () => {
    const a = await api('POST', '/pending/~/approve?id=.', { fingerprint: keyFingerprint(pk) });
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.status, 'approved');
    assert.equal((await api('GET', '/allowlist/~?id=..')).json.id, '..');
    assert.equal((await api('DELETE', '/allowlist/~?id=..')).status, 204);
    assert.equal(await f.server.store.getAllow('..'), undefined);
  });

  it('refuses ~ without an id query parameter (400 malformed)', async () => {
    assertError(await api('GET', '/devices/~'), 400, 'malformed');
    assertError(await api('POST', '/devices/~/revoke?id=', {}), 400, 'malformed');
  });

  it('also takes the ID percent-encoded from a client that sends the path as is', async () => {
    const r = await rawGet(f.base, '/api/v1/devices/%2E%2E', f.adminToken);
    assert.equal(r.status, 200, r.body);
    assert.equal(JSON.parse(r.body).id, '..');
  });

  it('lets oob show, revoke and re-enable the device ".."', async () => {
    const show = await oob([...conn, 'device', '..']);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /\.\./);
    const r = await oob([...conn, 'revoke', '..', '--reason', 'via oob']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await f.server.store.getRevocation('..'))?.reason, 'via oob');
    const e = await oob([...conn, 'reenable', '..']);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(await f.server.store.getRevocation('..'), undefined);
  });

  it('builds record paths with the ID percent-encoded, and "." and ".." in the query', () => {
    assert.equal(recordPath('devices', 'a:b', 'revoke'), '/api/v1/devices/a%3Ab/revoke');
    assert.equal(recordPath('devices', '..', 'revoke'), '/api/v1/devices/~/revoke?id=..');
    assert.equal(recordPath('allowlist', '.'), '/api/v1/allowlist/~?id=.');
    assert.equal(recordPath('pending', '...'), '/api/v1/pending/...');
    assert.equal(new URL(`http://x${recordPath('pending', '...')}`).pathname, '/api/v1/pending/...', 'three dots are no dot segment');
  });

  it('manages a device whose ID holds a colon through oob', async () => {
    const c = await f.provisionedDevice({ id: `dot:${process.pid}` });
    const r = await oob([...conn, 'revoke', c.id]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(await f.server.store.getRevocation(c.id));
  });
});
