/**
 * `oob flags` and `oob flags clear ID` as a child process against the real server (issue #6).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { startAdminServer, type AdminFixture } from '../../support/admin-server.ts';
import { flags, oneFlag } from '../../support/monitor-views.ts';

const BIN = new URL('../../../bin/oob.js', import.meta.url).pathname;

function oob(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('oob flags', function () {
  this.timeout(60_000);
  let f: AdminFixture;
  let conn: string[];

  before(async () => {
    f = await startAdminServer('oobf', { manyIdsThreshold: 0 });
    conn = ['--server', f.base, '--token', f.adminToken];
  });
  after(async () => {
    await f?.close();
  });

  it('says there are no open flags on a quiet server', async () => {
    const r = await oob([...conn, 'flags']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'no open flags');
  });

  it('lists an open flag with its kind and devices, clears it, and then lists it as cleared', async () => {
    const c = await f.pendingDevice();
    await f.device({ id: c.id }).provision();
    const flag = await oneFlag(f, 'key-changed', c.id);

    const list = await oob([...conn, 'flags']);
    assert.equal(list.code, 0, list.stderr);
    const line = list.stdout.split('\n').find((l) => l.startsWith(flag.id));
    assert.ok(line, list.stdout);
    assert.match(line, /key-changed/);
    assert.ok(line.includes(c.id));

    const json = await oob([...conn, '--json', 'flags']);
    assert.deepEqual(JSON.parse(json.stdout).items.map((x: { id: string }) => x.id), [flag.id]);

    const clear = await oob([...conn, 'flags', 'clear', flag.id, '--note', 'checked with the installer']);
    assert.equal(clear.code, 0, clear.stderr);
    assert.match(clear.stdout, new RegExp(`cleared flag ${flag.id}`));
    assert.deepEqual(await flags(f), []);

    const cleared = await oob([...conn, 'flags', '--status', 'cleared']);
    assert.match(cleared.stdout, /admin:admin/, 'who cleared it');

    const twice = await oob([...conn, 'flags', 'clear', flag.id]);
    assert.equal(twice.code, 1, 'refused: already cleared');
    const missing = await oob([...conn, 'flags', 'clear']);
    assert.equal(missing.code, 2, 'usage: no ID');
  });
});
