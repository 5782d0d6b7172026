import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadConfig } from '../../src/config.ts';
import { silentLogger } from '../../src/log.ts';
import { parseResponse } from '../../src/protocol/messages.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { hex } from '../support/bytes.ts';
import { tempDir } from '../support/temp-dir.ts';
import { V } from '../support/vectors.ts';
import { TestDevice } from '../support/device.ts';
import { privateKeyFromSeed } from '../../src/tokens/ed25519.ts';

const run = promisify(execFile);

/**
 * libcoap's coap-client (Debian libcoap3-bin) exits 0 even when a request fails, so every test reads
 * its output: `-v 6` logs the response code (e.g. "v:1 t:ACK c:2.01"), `-o FILE` saves the payload.
 */
async function coapClient(args: string[]): Promise<{ out: string; code: string | undefined; payload: Buffer }> {
  const { stdout, stderr } = await run('coap-client-notls', ['-v', '6', '-B', '10', ...args], { timeout: 20_000 });
  const out = stdout + stderr;
  // The response is the last logged message with a response class code; its payload follows as <<hex>>.
  const lines = out.split('\n');
  let code: string | undefined;
  let payload = Buffer.alloc(0);
  lines.forEach((line, i) => {
    const m = /^v:1 t:\w+ c:([2-5]\.\d\d)/.exec(line);
    if (!m) return;
    code = m[1];
    const next = /^<<([0-9a-f]*)>>$/.exec(lines[i + 1] ?? '');
    payload = next ? Buffer.from(next[1]!, 'hex') : Buffer.alloc(0);
  });
  return { out, code, payload };
}

describe('interop with libcoap coap-client-notls over real UDP', function () {
  this.timeout(60_000);
  let server: RunningServer;
  const t = tempDir();
  before(async () => {
    server = await startServer(loadConfig({ env: {}, flags: { dataDir: join(t.dir, 'data'), coapPort: 0, coapsPort: 0, adminPort: 0, bind: '127.0.0.1', mdns: false } }), silentLogger);
  });
  after(async () => {
    await server.close();
    t.cleanup();
  });
  const uri = (path: string) => `coap://127.0.0.1:${server.coapPort}${path}`;

  it('fetches /.well-known/core with the three idprov resources and filters by rt', async () => {
    const file = join(t.dir, 'core.txt');
    const r = await coapClient(['-m', 'get', '-o', file, uri('/.well-known/core')]);
    assert.equal(r.code, '2.05', r.out);
    const links = readFileSync(file, 'utf8');
    for (const rt of ['idprov.request', 'idprov.refresh', 'idprov.keys']) assert.match(links, new RegExp(`rt="?${rt.replace('.', '\\.')}`));
    assert.match(links, /<\/idprov\/keys>[^,]*ct=102/);
    const filtered = join(t.dir, 'core-keys.txt');
    await coapClient(['-m', 'get', '-o', filtered, uri('/.well-known/core?rt=idprov.keys')]);
    const only = readFileSync(filtered, 'utf8');
    assert.match(only, /idprov\/keys/);
    assert.doesNotMatch(only, /idprov\/request/);
  });

  it('answers the fixture request (signed with a foreign nonce) with 4.01 and a fresh nonce', async () => {
    const req = join(t.dir, 'fixture.cbor');
    writeFileSync(req, hex(V.request.cose_sign1_tagged));
    const r = await coapClient(['-m', 'post', '-t', '18', '-f', req, uri('/idprov/request')]);
    assert.equal(r.code, '4.01', r.out);
    const body = parseResponse(r.payload);
    assert.equal(body.err, 3);
    assert.equal(body.nonce?.length, 24);
  });

  it('provisions the vector device end to end: challenge, re-signed request, sealed token', async () => {
    const dev = new TestDevice(V.device.id, privateKeyFromSeed(hex(V.device.ed25519_seed)));
    await server.importer.importEntries(
      [{ id: dev.id, pk: dev.pk, mac: hex(V.device.mac), secret: V.device.oob_secret_utf8, type: 0, createdAt: server.service.now() }],
      { actor: { by: 'test' } },
    );
    const first = join(t.dir, 'r1.cbor');
    writeFileSync(first, dev.request({ mac: hex(V.device.mac) }));
    const challenge = await coapClient(['-m', 'post', '-t', '18', '-f', first, uri('/idprov/request')]);
    assert.equal(challenge.code, '4.01', challenge.out);
    const nonce = parseResponse(challenge.payload).nonce!;
    const second = join(t.dir, 'r2.cbor');
    const secondOut = join(t.dir, 'r2-resp.cbor');
    writeFileSync(second, dev.request({ nonce, mac: hex(V.device.mac), secret: V.device.oob_secret_utf8, seal: true }));
    const r = await coapClient(['-m', 'post', '-t', '18', '-f', second, '-o', secondOut, uri('/idprov/request')]);
    assert.equal(r.code, '2.01', r.out);
    const body = parseResponse(readFileSync(secondOut));
    assert.equal(body.status, 0);
    assert.ok(body.sealed);
  });

  it('gets 4.15 for a wrong Content-Format and 4.13 for a payload over 1024 bytes', async () => {
    const small = join(t.dir, 'small.bin');
    writeFileSync(small, Buffer.from('a0', 'hex'));
    assert.equal((await coapClient(['-m', 'post', '-t', '60', '-f', small, uri('/idprov/request')])).code, '4.15');
    const big = join(t.dir, 'big.bin');
    writeFileSync(big, Buffer.alloc(1100, 1));
    assert.equal((await coapClient(['-m', 'post', '-t', '18', '-f', big, uri('/idprov/request')])).code, '4.13');
    assert.equal((await coapClient(['-m', 'get', uri('/nope')])).code, '4.04');
    assert.equal((await coapClient(['-m', 'get', uri('/idprov/request')])).code, '4.05');
  });
});
