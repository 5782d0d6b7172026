/**
 * The `oob` command line end to end: `node bin/oob.js …` as a child process against the real server
 * (sidecar and CoAP on 127.0.0.1), with devices simulated over CoAP.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ERROR_TABLE } from '../../src/errors.ts';
import { legacyKeyFingerprint } from '../../src/tokens/ed25519.ts';
import { PATHS } from '../../tools/device-sim/client.ts';
import { call, lastEventSeq, startAdminServer, type AdminFixture } from '../support/admin-server.ts';

const BIN = new URL('../../bin/oob.js', import.meta.url).pathname;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `oob` with a clean environment (no IDPROV_* from the caller) and stdin that is not a terminal. */
function oob(args: string[], o: { env?: Record<string, string>; cwd?: string; onStderr?: (text: string) => void } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: o.cwd ?? process.cwd(),
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...o.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      o.onStderr?.(stderr);
    });
    child.stdin.end();
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const show = (r: Run) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

/** A loopback port nobody listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('oob command line against the running server', () => {
  let f: AdminFixture;
  let tokenFile: string;
  let conn: string[];

  before(async () => {
    f = await startAdminServer('oob');
    tokenFile = join(f.tmp, 'oob.token');
    writeFileSync(tokenFile, `${await f.server.auth.mint({ name: 'cli', role: 'admin', ttlS: 3600 }, Math.floor(Date.now() / 1000))}\n`, { mode: 0o600 });
    conn = ['--server', f.base, '--token-file', tokenFile];
  });
  after(async () => {
    await f?.close();
  });

  it('imports a CSV with a progress bar on stderr and a summary of added, updated and invalid rows', async () => {
    const file = join(f.tmp, 'devices.csv');
    writeFileSync(file, 'id,pk,mac,secret,type,expires\ncli-a,,aa:bb:cc:00:10:01,,device,\ncli-b,,aa:bb:cc:00:10:02,,device,\n');
    const r = await oob([...conn, 'import', file]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /devices\.csv: 2 rows — 2 added, 0 updated, 0 invalid/);
    assert.match(r.stderr, /uploading devices\.csv\s+100%/);
    const again = await oob([...conn, 'import', '--no-progress', file]);
    assert.match(again.stdout, /2 rows — 0 added, 2 updated, 0 invalid/);
    assert.equal(again.stderr, '');
    assert.equal((await call(f.base, 'GET', '/api/v1/allowlist/cli-b', { token: f.adminToken })).status, 200);
  });

  it('imports a JSON allowlist, and says so when the file cannot be read (exit 2)', async () => {
    const c = f.device();
    const file = join(f.tmp, 'devices.json');
    writeFileSync(file, JSON.stringify([{ id: 'cli-json', pk: c.publicKey.toString('hex') }]));
    const r = await oob([...conn, 'import', file]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /devices\.json: 1 row — 1 added, 0 updated, 0 invalid/);
    assert.equal((await call(f.base, 'GET', '/api/v1/allowlist/cli-json', { token: f.adminToken })).json.fingerprint, c.fingerprint);
    const missing = await oob([...conn, 'import', join(f.tmp, 'nope.csv')]);
    assert.equal(missing.code, 2, show(missing));
    assert.match(missing.stderr, /cannot read .*nope\.csv: ENOENT/);
  });

  it('imports nothing from a CSV with a bad row, lists the row by line number and exits 1; --valid-only imports the rest', async () => {
    const file = join(f.tmp, 'bad.csv');
    writeFileSync(file, 'id,pk,mac,secret,type,expires\ncli-good,,aa:bb:cc:00:20:01,,device,\ncli-bad,12ab,,,,\n');
    const r = await oob([...conn, 'import', file]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stdout, /2 rows, 1 invalid — nothing imported/);
    assert.match(r.stdout, /line 3 \(cli-bad\): pk: /);
    assert.equal((await call(f.base, 'GET', '/api/v1/allowlist/cli-good', { token: f.adminToken })).status, 404);
    const valid = await oob([...conn, 'import', '--valid-only', file]);
    assert.equal(valid.code, 0, show(valid));
    assert.match(valid.stdout, /2 rows — 1 added, 0 updated, 1 invalid/);
    assert.equal((await call(f.base, 'GET', '/api/v1/allowlist/cli-good', { token: f.adminToken })).status, 200);
  });

  it('lists pending requests in a table that shows each key fingerprint', async () => {
    const c = await f.pendingDevice();
    const r = await oob([...conn, 'list', 'pending']);
    assert.equal(r.code, 0, show(r));
    const [header, ...rows] = r.stdout.trimEnd().split('\n');
    assert.match(header!, /^ID\s+FINGERPRINT\s+TYPE\s+MAC\s+SOURCE\s+FIRST SEEN\s+LAST SEEN\s+REQUESTS$/);
    const row = rows.find((l) => l.startsWith(`${c.id} `));
    assert.ok(row, show(r));
    assert.match(row, new RegExp(`^${c.id}\\s+${c.fingerprint}\\s+device\\s+-\\s+127\\.0\\.0\\.1:\\d+\\s`));
  });

  it('lists rejected IDs with who rejected them, when and why, and says why when asked to approve one', async () => {
    const c = await f.pendingDevice();
    const rej = await oob([...conn, 'reject', c.id, '--reason', 'label does not match']);
    assert.equal(rej.code, 0, show(rej));
    const r = await oob([...conn, 'list', 'pending', '--status', 'rejected', '--all']);
    assert.equal(r.code, 0, show(r));
    const [header, ...rows] = r.stdout.trimEnd().split('\n');
    assert.match(header!, /\sSTATUS\s+DECIDED\s+BY\s+REASON$/);
    const row = rows.find((l) => l.startsWith(`${c.id} `));
    assert.ok(row, show(r));
    assert.match(row, /\srejected\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\S*\s+admin:cli\s+label does not match$/);
    const approve = await oob([...conn, 'approve', c.id, '--yes']);
    assert.equal(approve.code, 1, show(approve));
    assert.match(approve.stderr, /was rejected \(by admin:cli: label does not match\)/);
  });

  it('approves a pending device with --yes, pinned to the fingerprint it shows, and the device then gets its token', async () => {
    const c = await f.pendingDevice();
    const r = await oob([...conn, 'approve', c.id, '--yes']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`key fingerprint\\s+${c.fingerprint}`));
    assert.match(r.stdout, new RegExp(`approved ${c.id} \\(key ${c.fingerprint}\\)`));
    const p = await c.provision();
    assert.equal(p.status, 'approved', JSON.stringify(p));
    const events = (await call(f.base, 'GET', '/api/v1/events?limit=1000', { token: f.adminToken })).json.events;
    assert.ok(events.some((e: { kind: string; deviceId: string; actor: string }) => e.kind === 'admin.approve' && e.deviceId === c.id && e.actor === 'admin:cli'));
  });

  it('does not approve without --yes when stdin is not a terminal, nor with a fingerprint that is not the pending key', async () => {
    const c = await f.pendingDevice();
    const r = await oob([...conn, 'approve', c.id]);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /stdin is not a terminal.*--yes/);
    const wrong = await oob([...conn, 'approve', c.id, '--fingerprint', f.device().fingerprint, '--yes']);
    assert.equal(wrong.code, 1, show(wrong));
    assert.match(wrong.stderr, new RegExp(`the key of ${c.id} is ${c.fingerprint}`));
    const none = await oob([...conn, 'approve', 'nobody-waits', '--yes']);
    assert.equal(none.code, 1, show(none));
    assert.match(none.stderr, /no pending request for nobody-waits/);
    assert.equal((await c.provision()).status, 'pending');
    const pinned = await oob([...conn, 'approve', c.id, '--fingerprint', c.fingerprint, '--yes']);
    assert.equal(pinned.code, 0, show(pinned));
    assert.equal((await c.provision()).status, 'approved');
  });

  it('approves with a pin typed as a person reads it off a label (lower case, spaces, o for 0) or in the old base64url format', async () => {
    const typed = await f.pendingDevice();
    const spoken = typed.fingerprint.toLowerCase().replace(/-/g, ' ').replace(/0/g, 'o');
    const r = await oob([...conn, 'approve', typed.id, '--fingerprint', spoken, '--yes']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`approved ${typed.id} \\(key ${typed.fingerprint}\\)`));
    assert.equal((await typed.provision()).status, 'approved');
    const old = await f.pendingDevice();
    const legacy = await oob([...conn, 'approve', old.id, '--fingerprint', legacyKeyFingerprint(old.publicKey), '--yes']);
    assert.equal(legacy.code, 0, show(legacy));
    assert.equal((await old.provision()).status, 'approved');
  });

  it('allows one device by key with `oob allow`, and it is provisioned at its first request', async () => {
    const c = f.device();
    const r = await oob([...conn, 'allow', c.id, '--pk', c.publicKey.toString('hex'), '--expires', '2099-01-01T00:00:00Z']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, `allowed ${c.id} (key ${c.fingerprint}) until 2099-01-01 00:00:00Z; its next request is provisioned\n`);
    assert.equal((await c.provision()).status, 'approved');
    const byMac = await oob([...conn, '--json', 'allow', `${c.id}-mac`, '--mac', '24:0a:c4:00:00:01', '--type', 'service']);
    assert.equal(byMac.code, 0, show(byMac));
    const j = JSON.parse(byMac.stdout);
    assert.deepEqual([j.id, j.mac, j.type], [`${c.id}-mac`, '24:0a:c4:00:00:01', 'service']);
    const none = await oob([...conn, 'allow', 'x-1']);
    assert.equal(none.code, 2, show(none));
    assert.match(none.stderr, /--pk HEX, --mac MAC or --secret S/);
    const short = await oob([...conn, 'allow', 'x-1', '--pk', 'abcd']);
    assert.equal(short.code, 2, show(short));
    assert.match(short.stderr, /64 hex digits/);
    const weak = await oob([...conn, 'allow', 'x-1', '--secret', 'short']);
    assert.equal(weak.code, 1, show(weak));
    assert.equal((await call(f.base, 'GET', '/api/v1/allowlist/x-1', { token: f.adminToken })).status, 404);
  });

  it('revokes a device so that its refresh fails, and re-enables it', async () => {
    const c = await f.provisionedDevice();
    const r = await oob([...conn, 'revoke', c.id, '--reason', 'lost']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`revoked ${c.id}`));
    const refused = await c.refresh();
    assert.deepEqual([refused.status, refused.err], ['refused', ERROR_TABLE.revoked.err]);
    const listed = await oob([...conn, 'list', 'devices']);
    assert.match(listed.stdout, new RegExp(`^${c.id}\\s.*revoked by admin:cli \\(lost\\)$`, 'm'));
    const back = await oob([...conn, 'reenable', c.id]);
    assert.equal(back.code, 0, show(back));
    assert.equal((await c.refresh()).status, 'approved');
    const missing = await oob([...conn, 'revoke', 'no-such-device']);
    assert.equal(missing.code, 1, show(missing));
    assert.match(missing.stderr, /not-found: /);
  });

  it('disables provisioning with a reason, so a new device gets 5.03, and enables it again', async () => {
    const c = f.device();
    await f.allow({ id: c.id, pk: c.publicKey });
    try {
      const off = await oob([...conn, 'disable', '--reason', 'inventory']);
      assert.equal(off.code, 0, show(off));
      assert.match(off.stdout, /provisioning disabled.*inventory/);
      const status = await oob(['--server', f.base, 'status']);
      assert.match(status.stdout, /provisioning: DISABLED \(inventory\)/);
      const r = await c.provision();
      assert.deepEqual([r.code, r.err], ['5.03', ERROR_TABLE.disabled.err]);
    } finally {
      const on = await oob([...conn, 'enable', '--reason', 'inventory done']);
      assert.equal(on.code, 0, show(on));
      assert.match(on.stdout, /provisioning enabled/);
    }
    assert.equal((await c.provision()).status, 'approved');
    const events = (await call(f.base, 'GET', '/api/v1/events?limit=1000', { token: f.adminToken })).json.events;
    const kinds = events.filter((e: { kind: string }) => e.kind === 'admin.disable' || e.kind === 'admin.enable').slice(-2);
    assert.deepEqual(
      kinds.map((e: { kind: string; actor: string; detail: unknown }) => [e.kind, e.actor, e.detail]),
      [
        ['admin.disable', 'admin:cli', { reason: 'inventory' }],
        ['admin.enable', 'admin:cli', { reason: 'inventory done' }],
      ],
    );
  });

  it('prints JSON that parses with --json', async () => {
    const c = await f.pendingDevice();
    const pending = await oob([...conn, '--json', 'list', 'pending', '--all']);
    assert.equal(pending.code, 0, show(pending));
    const p = JSON.parse(pending.stdout);
    assert.equal(p.items.find((x: { id: string }) => x.id === c.id)?.fingerprint, c.fingerprint);
    const approved = await oob([...conn, '--json', 'approve', c.id, '--yes']);
    assert.equal(approved.code, 0, show(approved));
    assert.deepEqual([JSON.parse(approved.stdout).id, JSON.parse(approved.stdout).status], [c.id, 'approved']);
    assert.equal((await c.provision()).status, 'approved');
    const keys = await oob([...conn, 'keys', '--json']);
    assert.deepEqual(JSON.parse(keys.stdout), (await call(f.base, 'GET', '/api/v1/keys/jwks', { token: f.adminToken })).json);
    const devices = await oob([...conn, 'list', 'devices', '--json', '--limit', '1']);
    const d = JSON.parse(devices.stdout);
    assert.ok(Array.isArray(d.items) && d.items.length === 1);
    const status = await oob(['--server', f.base, '--json', 'status']);
    assert.equal(JSON.parse(status.stdout).status, 'ok');
  });

  it('follows the event feed with watch, one line per event', async () => {
    const end = await lastEventSeq(f.base, f.adminToken);
    const c = await f.pendingDevice();
    const r = await oob([...conn, 'watch', '--after', String(end), '--count', '1']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`^#\\d+ \\S+ \\S+ provision\\.pending ${c.id} by device from 127\\.0\\.0\\.1:\\d+ type=0\\n$`));
  });

  it('keeps watching until an event arrives, then prints it (long poll)', async () => {
    const from = await lastEventSeq(f.base, f.adminToken);
    let changed: Promise<unknown> | undefined;
    // The change is made once watch says it is watching.
    const r = await oob([...conn, '--json', 'watch', '--after', String(from), '--count', '1'], {
      onStderr: (text) => {
        if (!changed && text.includes('watching the events')) changed = call(f.base, 'PUT', '/api/v1/provisioning', { token: f.adminToken, json: { enabled: true } });
      },
    });
    await changed;
    assert.equal(r.code, 0, show(r));
    const e = JSON.parse(r.stdout);
    assert.deepEqual([e.kind, e.actor, e.seq > from], ['admin.enable', 'admin:admin', true]);
  });

  it('writes the COSE_KeySet bytes with keys --cose, and shows the JWKS as a table', async () => {
    const file = join(f.tmp, 'keys.cbor');
    const r = await oob([...conn, 'keys', '--cose', file]);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(readFileSync(file), Buffer.from((await f.device().get(PATHS.keys)).payload));
    const t = await oob([...conn, 'keys']);
    assert.match(t.stdout, new RegExp(`^${f.server.keyring.current.kid}\\s+\\S+\\s+EdDSA\\s+\\S+\\s+current$`, 'm'));
  });

  it('says it cannot reach the sidecar when nothing listens there, with exit code 3', async () => {
    const port = await closedPort();
    const r = await oob(['--server', `http://127.0.0.1:${port}`, '--token', 'x', 'list', 'pending']);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stderr, new RegExp(`cannot reach the idprov admin sidecar at http://127\\.0\\.0\\.1:${port} — is the server running\\? \\(--server\\)`));
  });

  it("shows the server's error code and message when it refuses the token, with exit code 4", async () => {
    const bad = await oob(['--server', f.base, '--token', 'not-a-token', 'list', 'pending']);
    assert.equal(bad.code, 4, show(bad));
    assert.match(bad.stderr, /401 unauthenticated: invalid token/);
    const expired = await f.server.auth.mint({ name: 'old', role: 'admin', ttlS: 1 }, Math.floor(Date.now() / 1000) - 100);
    const old = await oob(['--server', f.base, '--token', expired, 'list', 'devices']);
    assert.equal(old.code, 4, show(old));
    assert.match(old.stderr, /401 unauthenticated: token expired/);
    const hub = await f.server.auth.mint({ name: 'hub', role: 'hub', ttlS: 600 }, Math.floor(Date.now() / 1000));
    const forbidden = await oob(['--server', f.base, '--token', hub, 'disable']);
    assert.equal(forbidden.code, 4, show(forbidden));
    assert.match(forbidden.stderr, /403 forbidden: this operation needs the admin role/);
    assert.equal((await oob(['--server', f.base, '--token', hub, 'list', 'devices'])).code, 0, 'a hub token may read');
  });

  it('takes the server from IDPROV_ADMIN_URL and the token from IDPROV_ADMIN_TOKEN or <data>/admin.token', async () => {
    const viaEnv = await oob(['list', 'devices'], { env: { IDPROV_ADMIN_URL: f.base, IDPROV_ADMIN_TOKEN: f.adminToken } });
    assert.equal(viaEnv.code, 0, show(viaEnv));
    const viaData = await oob(['--data', f.dataDir, 'list', 'devices'], { env: { IDPROV_ADMIN_URL: f.base } });
    assert.equal(viaData.code, 0, show(viaData));
    const viaCwd = await oob(['list', 'devices'], { env: { IDPROV_ADMIN_URL: f.base }, cwd: join(f.dataDir, '..') });
    assert.equal(viaCwd.code, 0, `./data/admin.token by default\n${show(viaCwd)}`);
    const none = await oob(['--data', join(f.tmp, 'nowhere'), 'list', 'devices'], { env: { IDPROV_ADMIN_URL: f.base } });
    assert.equal(none.code, 2, show(none));
    assert.match(none.stderr, /no admin token/);
  });
});
