/**
 * The Hub example (tools/hub-example/verify-and-follow.ts, docs/hub.md) run as a program against a
 * real server started here: it verifies a real device token with the JWKS alone, refuses tampered,
 * foreign-key and expired ones, asks the server about a revoked device, and follows the event feed by
 * long poll and by server-sent events.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyCache, verifyToken } from '../../tools/hub-example/verify-and-follow.ts';
import { nowS, startAdminServer, type AdminFixture } from '../support/admin-server.ts';

const EXAMPLE = join(import.meta.dirname, '../../tools/hub-example/verify-and-follow.ts');
const TSX = join(import.meta.dirname, '../../node_modules/.bin/tsx');

describe('the Hub example', function () {
  this.timeout(60_000);
  let f: AdminFixture;
  let hubFile: string;
  let hub: string;

  const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(TSX, [EXAMPLE, '--server', f.base, '--token-file', hubFile, ...args], { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      );
    });

  before(async () => {
    f = await startAdminServer('hub');
    hub = await f.server.auth.mint({ name: 'example-hub', role: 'hub', ttlS: 3600 }, nowS());
    hubFile = join(f.tmp, 'hub.token');
    writeFileSync(hubFile, `${hub}\n`, { mode: 0o600 });
  });
  after(async () => {
    await f?.close();
  });

  it('verifies a real device token with the JWKS, hex or base64url, and prints its claims with the cnf key', async () => {
    const dev = await f.provisionedDevice();
    for (const text of [dev.token!.toString('hex'), dev.token!.toString('base64url')]) {
      const r = await run(['verify', text]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const out = JSON.parse(r.stdout);
      assert.equal(out.valid, true);
      assert.equal(out.claims.sub, dev.id);
      assert.equal(out.claims.cnf, Buffer.from(dev.publicKey).toString('hex'));
      assert.equal(out.claims.kid, Buffer.from(f.server.keyring.current.kid, 'hex').toString('base64url'), 'the kid as the JWKS names it');
    }
  });

  it('refuses a token with a flipped signature bit, one whose kid the JWKS lacks, an expired one and another issuer’s', async () => {
    const dev = await f.provisionedDevice();
    const tampered = Buffer.from(dev.token!);
    tampered[tampered.length - 1]! ^= 1;
    const bad = await run(['verify', tampered.toString('hex')]);
    assert.equal(bad.code, 1);
    assert.match(JSON.parse(bad.stdout).error, /signature/);
    // A kid the JWKS does not have: the token's kid bytes changed.
    const foreign = Buffer.from(dev.token!);
    const at = foreign.indexOf(Buffer.from(f.server.keyring.current.kid, 'hex'));
    assert.ok(at > 0, 'the kid bytes are in the protected header');
    foreign[at]! ^= 0xff;
    const unknown = await run(['verify', foreign.toString('hex')]);
    assert.equal(unknown.code, 1);
    assert.match(JSON.parse(unknown.stdout).error, /unknown kid/);
    // Expired: the example's clock is the wall clock; check the function with a later now.
    const keys = new KeyCache(f.base, hub);
    await assert.rejects(verifyToken(dev.token!, keys, { now: nowS() + 400 * 86_400 }), /expired/);
    const ok = await verifyToken(dev.token!, keys, { now: nowS(), issuer: 'idprov' });
    assert.equal(ok.sub, dev.id);
    await assert.rejects(verifyToken(dev.token!, keys, { now: nowS(), issuer: 'someone-else' }), /issuer/);
  });

  it('says a revoked device token is still well signed, and that the server refuses it (--ask-server)', async () => {
    const dev = await f.provisionedDevice();
    await f.server.admin.revoke(dev.id, 'example', { by: 'test' });
    const local = await run(['verify', dev.token!.toString('hex')]);
    assert.equal(local.code, 0, 'the signature alone cannot know');
    const asked = await run(['verify', dev.token!.toString('hex'), '--ask-server']);
    assert.equal(asked.code, 1);
    assert.equal(JSON.parse(asked.stdout).error, 'revoked');
  });

  for (const mode of ['long poll', 'server-sent events'] as const) {
    it(`follows the event feed by ${mode}, printing an event committed after it started`, async () => {
      const after = (await f.server.store.listEvents(0, 100_000)).at(-1)?.seq ?? 0;
      const child = spawn(TSX, [EXAMPLE, '--server', f.base, '--token-file', hubFile, 'follow', '--after', String(after), '--max', '1', ...(mode === 'server-sent events' ? ['--sse'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      // Commit an event once the follower says it is polling / its stream is open.
      const ready = new Promise<void>((r) => child.stderr.on('data', () => /polling after|stream open after/.test(stderr) && r()));
      await Promise.race([ready, exited]);
      await f.server.admin.reject(`hub-follow-${mode.replace(/\W/g, '')}`, 'example', { by: 'test' });
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000))]);
      if (code === 'timeout') child.kill('SIGKILL');
      assert.equal(code, 0, stderr);
      const e = JSON.parse(stdout.trim().split('\n')[0]!);
      assert.equal(e.kind, 'admin.reject');
      assert.ok(e.seq > after);
    });
  }
});
