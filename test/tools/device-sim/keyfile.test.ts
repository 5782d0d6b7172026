import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { keyFingerprint, privateKeyFromSeed, rawPublicKey } from '../../../src/tokens/ed25519.ts';
import { DeviceClient, DeviceSimError } from '../../../tools/device-sim/client.ts';
import { createKeyFile, loadOrCreateKeyFile, loadToken, readKeyFile, saveToken, tokenFileOf } from '../../../tools/device-sim/keyfile.ts';
import { hex } from '../../support/bytes.ts';
import { tempDir } from '../../support/temp-dir.ts';
import { V } from '../../support/vectors.ts';
import { ScriptedExchange } from '../../support/device-sim-server.ts';

const mode = (f: string): number => statSync(f).mode & 0o777;

describe('device-sim key file', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => {
    tmp = tempDir('idprov-devsim-key-');
  });
  afterEach(() => tmp.cleanup());

  it('creates a missing key file with mode 0600 holding the Ed25519 seed and the X25519 secret as hex', () => {
    const file = join(tmp.dir, 'dev.key');
    const loaded = loadOrCreateKeyFile(file);
    assert.equal(loaded.created, true);
    assert.equal(mode(file), 0o600);
    const json = JSON.parse(readFileSync(file, 'utf8'));
    assert.match(json.seed, /^[0-9a-f]{64}$/);
    assert.match(json.x25519Secret, /^[0-9a-f]{64}$/);
    assert.deepEqual(loaded.keys.publicKey, rawPublicKey(privateKeyFromSeed(hex(json.seed))));
    assert.deepEqual(Buffer.from(loaded.keys.x25519Public), Buffer.from(nacl.box.keyPair.fromSecretKey(hex(json.x25519Secret)).publicKey));
  });

  it('creates the key file in a directory that does not exist yet', () => {
    const file = join(tmp.dir, 'a', 'b', 'dev.key');
    loadOrCreateKeyFile(file);
    assert.equal(mode(file), 0o600);
  });

  it('reuses an existing key file, so the device keeps its key and fingerprint across runs', () => {
    const file = join(tmp.dir, 'dev.key');
    const first = loadOrCreateKeyFile(file);
    const again = loadOrCreateKeyFile(file);
    assert.equal(again.created, false);
    assert.deepEqual(again.keys.publicKey, first.keys.publicKey);
    assert.deepEqual(Buffer.from(again.keys.x25519Secret), Buffer.from(first.keys.x25519Secret));
    assert.deepEqual(again.warnings, []);
  });

  it('gives two clients on the same key file the same fingerprint, the one admins see', () => {
    const file = join(tmp.dir, 'dev.key');
    const a = new DeviceClient({ id: 'dev-1', keyFile: file, exchange: new ScriptedExchange([]) });
    const b = new DeviceClient({ id: 'dev-1', keyFile: file, exchange: new ScriptedExchange([]) });
    assert.equal(a.keyFileCreated, true);
    assert.equal(b.keyFileCreated, false);
    assert.equal(b.fingerprint, a.fingerprint);
    assert.equal(a.fingerprint, keyFingerprint(a.publicKey));
  });

  it('loads the key of a hand-written key file (the vector seed gives the vector public key)', () => {
    const file = join(tmp.dir, 'vec.key');
    writeFileSync(file, JSON.stringify({ seed: V.device.ed25519_seed, x25519Secret: V.device.x25519_sk }), { mode: 0o600 });
    const { keys } = readKeyFile(file);
    assert.equal(keys.publicKey.toString('hex'), V.device.ed25519_pk);
    assert.equal(Buffer.from(keys.x25519Public).toString('hex'), V.device.x25519_pk);
  });

  it('warns when the key file is readable by other users', () => {
    const file = join(tmp.dir, 'dev.key');
    createKeyFile(file);
    chmodSync(file, 0o644);
    const { warnings } = readKeyFile(file);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /chmod 600/);
  });

  it('refuses a key file whose seed is not 64 hex digits, with code key-file', () => {
    const file = join(tmp.dir, 'bad.key');
    writeFileSync(file, JSON.stringify({ seed: 'abcd', x25519Secret: V.device.x25519_sk }), { mode: 0o600 });
    assert.throws(() => readKeyFile(file), (e: unknown) => e instanceof DeviceSimError && e.code === 'key-file');
  });

  it('refuses a key file that is not JSON, with code key-file', () => {
    const file = join(tmp.dir, 'bad.key');
    writeFileSync(file, 'not json', { mode: 0o600 });
    assert.throws(() => loadOrCreateKeyFile(file), (e: unknown) => e instanceof DeviceSimError && e.code === 'key-file');
  });

  it('does not overwrite an existing key file when asked to create one', () => {
    const file = join(tmp.dir, 'dev.key');
    const before = readFileSync((createKeyFile(file), file));
    assert.throws(() => createKeyFile(file), (e: unknown) => e instanceof DeviceSimError && e.code === 'key-file');
    assert.deepEqual(readFileSync(file), before);
  });

  it('stores the token next to the key file with mode 0600 and loads it back', () => {
    const file = join(tmp.dir, 'dev.key');
    assert.equal(loadToken(file), undefined);
    saveToken(file, hex(V.token.cwt));
    assert.equal(tokenFileOf(file), `${file}.token`);
    assert.equal(mode(tokenFileOf(file)), 0o600);
    assert.equal(loadToken(file)!.toString('hex'), V.token.cwt);
    saveToken(file, Buffer.from('replaced'));
    assert.equal(loadToken(file)!.toString(), 'replaced');
  });

  it('picks up the stored token of its own ID and key when a client starts', () => {
    const file = join(tmp.dir, 'vec.key');
    writeFileSync(file, JSON.stringify({ seed: V.device.ed25519_seed, x25519Secret: V.device.x25519_sk }), { mode: 0o600 });
    saveToken(file, hex(V.token.cwt));
    const c = new DeviceClient({ id: V.device.id, keyFile: file, exchange: new ScriptedExchange([]) });
    assert.equal(c.token!.toString('hex'), V.token.cwt);
    assert.equal(c.claims!.sub, V.device.id);
    assert.deepEqual(c.warnings, []);
  });

  it('ignores, with a warning, a stored token that was issued to another device ID', () => {
    const file = join(tmp.dir, 'vec.key');
    writeFileSync(file, JSON.stringify({ seed: V.device.ed25519_seed, x25519Secret: V.device.x25519_sk }), { mode: 0o600 });
    saveToken(file, hex(V.token.cwt));
    const c = new DeviceClient({ id: 'someone-else', keyFile: file, exchange: new ScriptedExchange([]) });
    assert.equal(c.token, undefined);
    assert.equal(c.warnings.length, 1);
    assert.ok(existsSync(tokenFileOf(file)), 'the stored token file is left alone');
  });
});
