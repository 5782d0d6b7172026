/**
 * The device simulator against the real server (src/server.ts `startServer`) over CoAP/UDP on
 * 127.0.0.1: node-coap's client on one side, the project's CoAP engine on the other.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { AllowEntry } from '../../../src/domain.ts';
import { generateEd25519, keyFingerprint } from '../../../src/tokens/ed25519.ts';
import { DeviceClient, verifyToken, type DeviceClientOptions } from '../../../tools/device-sim/client.ts';
import { readKeyFile, tokenFileOf } from '../../../tools/device-sim/keyfile.ts';
import { tempDir } from '../../support/temp-dir.ts';
import { startLiveServer, type LiveServer } from '../../support/device-sim-server.ts';

const run = promisify(execFile);
const BIN = new URL('../../../bin/device-sim.js', import.meta.url).pathname;
const nowS = () => Math.floor(Date.now() / 1000);

describe('device-sim end to end over CoAP/UDP on loopback (real server)', () => {
  let server: LiveServer;
  let tmp: ReturnType<typeof tempDir>;
  const clients: DeviceClient[] = [];
  let n = 0;

  before(async () => {
    server = await startLiveServer();
  });
  after(async () => {
    await server?.close();
  });
  beforeEach(() => {
    tmp = tempDir('idprov-devsim-e2e-');
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    tmp.cleanup();
  });

  /** A client for a fresh device ID (or the given one) talking to the server. */
  function device(o: Partial<DeviceClientOptions> = {}): DeviceClient {
    const c = new DeviceClient({ host: '127.0.0.1', port: server.port, id: `e2e-dev-${++n}`, timeoutMs: 10_000, ...o });
    clients.push(c);
    return c;
  }
  const allow = (e: Partial<AllowEntry> & { id: string }) => server.importer.importEntries([{ type: 0, createdAt: nowS(), ...e }], { actor: { by: 'test' } });

  it('gives an allowlisted device a token after one nonce challenge', async () => {
    const c = device();
    await allow({ id: c.id, pk: c.publicKey });
    const r = await c.provision();
    assert.equal(r.status, 'approved', JSON.stringify(r));
    assert.equal(r.code, '2.01');
    assert.equal(r.attempts, 2);
    assert.equal(r.sealed, false);
    assert.equal(r.claims!.sub, c.id);
    assert.deepEqual(Buffer.from(r.claims!.cnf), c.publicKey);
    assert.equal(r.ttl, 3600);
    assert.equal(r.exp, r.claims!.exp);
  });

  it('gets a token that verifies against the key set of /idprov/keys', async () => {
    const c = device();
    await allow({ id: c.id, pk: c.publicKey });
    const r = await c.provision();
    const keys = await c.keys();
    assert.ok(keys.length >= 1);
    assert.equal(verifyToken(r.token!, keys), true);
  });

  it('leaves an unknown device pending with the retry hint and a fresh nonce for its next attempt', async () => {
    const c = device();
    const r = await c.provision();
    assert.equal(r.status, 'pending', JSON.stringify(r));
    assert.equal(r.code, '2.05');
    assert.equal(r.retry, 60);
    assert.equal(r.token, undefined);
    assert.ok(c.heldNonce, 'the pending response carried a nonce');
  });

  it('gets the token in a single round trip on its next attempt after an admin approves its key', async () => {
    const c = device();
    assert.equal((await c.provision()).status, 'pending');
    await server.admin.approve(c.id, { fingerprint: c.fingerprint }, { by: 'test' });
    const r = await c.provision();
    assert.equal(r.status, 'approved', JSON.stringify(r));
    assert.equal(r.attempts, 1);
  });

  it('keeps polling while pending and is approved when an admin approves during the injected sleep', async () => {
    const c = device();
    const slept: number[] = [];
    const r = await c.provision({
      waitPending: true,
      sleep: async (s) => {
        slept.push(s);
        if (slept.length === 2) await server.admin.approve(c.id, { fingerprint: c.fingerprint }, { by: 'test' });
      },
    });
    assert.equal(r.status, 'approved', JSON.stringify(r));
    assert.deepEqual(slept, [60, 90]);
    assert.equal(r.attempts, 4, 'one challenge, then one request per wait');
  });

  it('opens a token sealed to its X25519 key', async () => {
    const c = device({ seal: true });
    await allow({ id: c.id, pk: c.publicKey });
    const r = await c.provision();
    assert.equal(r.status, 'approved', JSON.stringify(r));
    assert.equal(r.sealed, true);
    assert.equal(r.claims!.sub, c.id);
    assert.equal(verifyToken(r.token!, await c.keys()), true);
  });

  it('proves the MAC and the out-of-band secret of an allowlist entry that holds no key', async () => {
    const secret = 'printed-label-9X2K-77';
    const c = device({ mac: '24:0a:c4:00:00:01', secret });
    await allow({ id: c.id, mac: Buffer.from('240ac4000001', 'hex'), secret });
    const r = await c.provision();
    assert.equal(r.status, 'approved', JSON.stringify(r));
  });

  it('is told oob-mismatch (4.01) when it proves the wrong out-of-band secret', async () => {
    const c = device({ secret: 'not-the-printed-secret' });
    await allow({ id: c.id, secret: 'printed-label-9X2K-77' });
    const r = await c.provision();
    assert.equal(r.status, 'refused');
    assert.equal(r.code, '4.01');
    assert.equal(r.errName, 'oob-mismatch');
  });

  it('is refused with key-mismatch when its key differs from the allowlisted one', async () => {
    const c = device();
    await allow({ id: c.id, pk: generateEd25519().publicRaw });
    const r = await c.provision();
    assert.deepEqual([r.status, r.code, r.errName, r.retry], ['refused', '4.03', 'key-mismatch', 3600]);
  });

  it('is refused with rejected after an admin rejects it', async () => {
    const c = device();
    await server.admin.reject(c.id, 'not ours', { by: 'test' });
    const r = await c.provision();
    assert.deepEqual([r.status, r.code, r.errName], ['refused', '4.03', 'rejected']);
  });

  it('refreshes its token into a new, longer-lived one bound to the same key', async () => {
    const c = device();
    await allow({ id: c.id, pk: c.publicKey });
    const first = await c.provision();
    const r = await c.refresh();
    assert.equal(r.status, 'approved', JSON.stringify(r));
    assert.equal(r.ttl, 30 * 86_400);
    assert.notDeepEqual(r.claims!.cti, first.claims!.cti);
    assert.deepEqual(Buffer.from(r.claims!.cnf), c.publicKey);
    assert.deepEqual(c.token, r.token);
  });

  it('gets a role claim when it provisions as a service', async () => {
    const c = device({ type: 'service' });
    await allow({ id: c.id, pk: c.publicKey, type: 1 });
    const r = await c.provision();
    assert.equal(r.claims!.role, 'service');
  });

  it('gets 4.01 bad-signature for a request body signed with another key', async () => {
    const c = device();
    const challenge = await c.post('/idprov/request', c.requestBodyMap());
    assert.equal(challenge.code, '4.01');
    const r = await c.post('/idprov/request', c.requestBodyMap(challenge.body!.nonce), { signWith: generateEd25519().privateKey });
    assert.equal(r.code, '4.01');
    assert.equal(r.body!.err, 2);
  });

  it('gets 4.01 nonce when it answers with a nonce that was already used', async () => {
    const c = device();
    const challenge = await c.post('/idprov/request', c.requestBodyMap());
    const nonce = challenge.body!.nonce!;
    const once = await c.post('/idprov/request', c.requestBodyMap(nonce));
    assert.equal(once.code, '2.05');
    const twice = await c.post('/idprov/request', c.requestBodyMap(nonce));
    assert.equal(twice.code, '4.01');
    assert.equal(twice.body!.err, 3);
    assert.ok(twice.body!.nonce, 'a fresh nonce comes with the refusal');
  });

  it('gets 4.15 when the Content-Format is not COSE_Sign1', async () => {
    const c = device();
    const r = await c.post('/idprov/request', c.requestBodyMap(), { contentFormat: 60 });
    assert.equal(r.code, '4.15');
  });

  it('keeps its key and its token across restarts of the simulator, and refreshes with the stored token', async () => {
    const keyFile = join(tmp.dir, 'dev.key');
    const a = device({ keyFile });
    await allow({ id: a.id, pk: a.publicKey });
    const issued = await a.provision();
    assert.equal(statSync(tokenFileOf(keyFile)).mode & 0o777, 0o600);
    await a.close();
    const b = device({ id: a.id, keyFile });
    assert.equal(b.fingerprint, a.fingerprint);
    assert.deepEqual(b.token, issued.token);
    const r = await b.refresh();
    assert.equal(r.status, 'approved', JSON.stringify(r));
  });

  describe('command line', () => {
    it('provisions an allowlisted device and prints JSON with the fingerprint, token size and expiry', async () => {
      const keyFile = join(tmp.dir, 'cli.key');
      const id = `e2e-cli-${++n}`;
      const { stdout: kg } = await run(process.execPath, [BIN, 'keygen', '--key', keyFile, '--json']);
      const key = JSON.parse(kg);
      assert.equal(key.fingerprint, keyFingerprint(readKeyFile(keyFile).keys.publicKey));
      await allow({ id, pk: Buffer.from(key.pk, 'hex') });
      const { stdout } = await run(process.execPath, [BIN, 'provision', '--server', `coap://127.0.0.1:${server.port}`, '--id', id, '--key', keyFile, '--seal', '--json']);
      const j = JSON.parse(stdout.trim().split('\n').pop()!);
      assert.equal(j.status, 'approved');
      assert.equal(j.fingerprint, key.fingerprint);
      assert.equal(j.sealed, true);
      assert.equal(j.tokenBytes, statSync(tokenFileOf(keyFile)).size);
      assert.equal(j.tokenBytes, j.token.length / 2);
      assert.equal(typeof j.exp, 'number');
      assert.equal(j.claims.sub, id);
    });

    it('exits with status 2 and names the key fingerprint to approve while pending', async () => {
      const keyFile = join(tmp.dir, 'cli.key');
      const id = `e2e-cli-${++n}`;
      const err = await run(process.execPath, [BIN, 'provision', '--server', `coap://127.0.0.1:${server.port}`, '--id', id, '--key', keyFile]).then(
        () => assert.fail('expected a non-zero exit'),
        (e: { code: number; stdout: string }) => e,
      );
      assert.equal(err.code, 2);
      const fp = keyFingerprint(readKeyFile(keyFile).keys.publicKey);
      assert.match(err.stdout, /pending \(2\.05\)/);
      assert.ok(err.stdout.includes(`approve ${id} with key ${fp}`), err.stdout);
    });
  });
});
