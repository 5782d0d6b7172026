import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeKeySet } from '../../src/protocol/cwt.ts';
import { tempDir } from '../support/temp-dir.ts';
import { coapRequest } from '../support/coap-client.ts';

const BIN = 'bin/idprov.js';

function idprov(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
}

/** Start `idprov serve`, resolve with its "listening" log record. */
function serve(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      for (const line of out.split('\n')) {
        if (line.includes('"idprov listening"')) resolve(JSON.parse(line));
      }
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${err}${out}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, listening, exited, output: () => out };
}

describe('the idprov command line', function () {
  this.timeout(90_000);
  const t = tempDir();
  after(() => t.cleanup());

  it('reports every configuration error at once and exits 2', () => {
    const r = idprov(['serve', '--data', join(t.dir, 'x'), '--coap-port', '99999', '--log-level', 'loud', '--bind', 'not-an-ip'], { IDPROV_TOKEN_TTL: 'soon' });
    assert.equal(r.status, 2);
    for (const needle of ['coapPort', 'logLevel', 'bind', 'tokenTtl (IDPROV_TOKEN_TTL)']) assert.match(r.stderr, new RegExp(needle.replace(/[()]/g, '\\$&')));
  });

  it('refuses an allowlist with a bad row, naming its line, and imports nothing', () => {
    const file = join(t.dir, 'bad.csv');
    writeFileSync(file, 'id,mac\nok-1,aa:bb:cc:dd:ee:01\nbad id,aa:bb:cc:dd:ee:02\nok-2,zz\n');
    const data = join(t.dir, 'bad-data');
    const r = idprov(['allowlist', 'import', file, '--data', data]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /line 3 \(bad id\)/);
    assert.match(r.stderr, /line 4 \(ok-2\): mac/);
    const check = idprov(['allowlist', 'check', file]);
    assert.equal(check.status, 1);
    assert.match(check.stdout, /1 valid, 2 invalid/);
  });

  it('rotates the nonce secret in the database, keeping the previous one for a nonce lifetime, and refuses when the configuration sets it', async () => {
    const data = join(t.dir, 'nonce-data');
    const first = idprov(['nonce-secret', 'rotate', '--data', data]);
    assert.equal(first.status, 0, first.stderr);
    const second = idprov(['nonce-secret', 'rotate', '--data', data]);
    assert.equal(second.status, 0, second.stderr);
    const until = /accepted until (\S+)$/m.exec(second.stdout)?.[1];
    assert.ok(until, second.stdout);
    const { SqliteStore } = await import('../../src/store/sqlite/store.ts');
    const store = await SqliteStore.open(join(data, 'idprov.db'));
    try {
      const [current, previous, previousUntil] = await Promise.all(['nonce.secret', 'nonce.secret.previous', 'nonce.secret.previous-until'].map((n) => store.getSetting(n)));
      assert.match(current!, /^[0-9a-f]{64}$/);
      assert.match(previous!, /^[0-9a-f]{64}$/);
      assert.notEqual(current, previous);
      assert.equal(new Date(Number(previousUntil) * 1000).toISOString(), until);
      const left = Number(previousUntil) - Math.floor(Date.now() / 1000);
      assert.ok(left > 300 && left <= 330, `the default nonce lifetime (300 s) plus the pick-up time: ${left} s`);
      assert.ok((await store.listEvents(0, 100)).some((e) => e.kind === 'admin.nonce-secret.rotate' && e.actor === 'cli'));
    } finally {
      await store.close();
    }
    const fixed = idprov(['nonce-secret', 'rotate', '--data', data], { IDPROV_NONCE_SECRET: 'ab'.repeat(32) });
    assert.equal(fixed.status, 2);
    assert.match(fixed.stderr, /nonceSecret is set in the configuration/);
  });

  it('serves on its settings from flags and environment, picks up a rotated key on SIGHUP, and stops cleanly on SIGTERM', async () => {
    const data = join(t.dir, 'serve-data');
    const s = serve(['--data', data, '--coap-port', '0', '--coaps-port', '0', '--bind', '127.0.0.1', '--no-mdns'], { IDPROV_ADMIN_PORT: '0', IDPROV_ISSUER: 'test-iss' });
    const rec = await s.listening;
    const port = rec['coap'] as number;
    assert.ok(port > 0);
    const before = decodeKeySet((await coapRequest({ port, path: '/idprov/keys' })).payload);
    assert.equal(before.length, 1);
    const rot = idprov(['keys', 'rotate', '--data', data]);
    assert.equal(rot.status, 0, rot.stderr);
    const kid = /new signing key ([0-9a-f]{16})/.exec(rot.stdout)![1];
    // The server re-reads its keys every 10 s, and at once on SIGHUP; poll (bounded) until it lists the new key first.
    s.child.kill('SIGHUP');
    let after = before;
    for (let i = 0; i < 240 && Buffer.from(after[0]!.kid).toString('hex') !== kid; i++) {
      await new Promise((r) => setTimeout(r, 500));
      after = decodeKeySet((await coapRequest({ port, path: '/idprov/keys' })).payload);
    }
    assert.equal(Buffer.from(after[0]!.kid).toString('hex'), kid, 'the new key signs');
    assert.equal(after.length, 2, 'the retired key still verifies its tokens');
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
    assert.match(s.output(), /"msg":"stopped"/);
  });
});
