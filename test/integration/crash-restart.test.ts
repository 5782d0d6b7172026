import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseResponse, type ResponseBody } from '../../src/protocol/messages.ts';
import { keyFingerprint } from '../../src/tokens/ed25519.ts';
import { decodeKeySet } from '../../src/protocol/cwt.ts';
import { parseSign1 } from '../../src/protocol/cose.ts';
import { tempDir } from '../support/temp-dir.ts';
import { coapRequest } from '../support/coap-client.ts';
import { TestDevice } from '../support/device.ts';
import { ServerChild } from '../support/server-process.ts';


async function post(port: number, path: string, payload: Buffer): Promise<{ code: string; body: ResponseBody }> {
  const r = await coapRequest({ port, method: 'POST', path, payload, contentFormat: 18 });
  return { code: r.code, body: parseResponse(r.payload) };
}

/** The device flow: challenge, then the signed request with the nonce. */
async function provision(port: number, dev: TestDevice, nonce?: Uint8Array) {
  let n = nonce;
  if (!n) {
    const ch = await post(port, '/idprov/request', dev.request());
    assert.equal(ch.code, '4.01');
    n = ch.body.nonce!;
  }
  return post(port, '/idprov/request', dev.request({ nonce: n }));
}

async function refresh(port: number, dev: TestDevice, token: Uint8Array) {
  const ch = await post(port, '/idprov/refresh', dev.refresh(token));
  return post(port, '/idprov/refresh', dev.refresh(token, ch.body.nonce!));
}

describe('a server killed with SIGKILL restarts with every approval, device and revocation intact', function () {
  this.timeout(60_000);
  const t = tempDir();
  after(() => {
    for (const c of ServerChild.all) c.proc.kill('SIGKILL');
    t.cleanup();
  });

  it('keeps allowlist consumption, devices, pending requests, rejections and revocations across kill -9', async () => {
    const a = new TestDevice('crash-a');
    const b = new TestDevice('crash-b');
    const c = new TestDevice('crash-c');
    const e = new TestDevice('crash-e');
    const f = new TestDevice('crash-f');
    const allowlist = join(t.dir, 'allow.csv');
    writeFileSync(allowlist, `id,pk\n${a.id},${a.pk.toString('hex')}\n${b.id},${b.pk.toString('hex')}\n`);
    const flags = { dataDir: join(t.dir, 'data'), coapPort: 0, coapsPort: 0, adminPort: 0, bind: '127.0.0.1', mdns: false };

    let s = await ServerChild.start({ ...flags, allowlist });
    const tokA = await provision(s.port, a);
    assert.equal(tokA.code, '2.01');
    const tokB = await provision(s.port, b);
    assert.equal(tokB.code, '2.01');
    const pendC = await provision(s.port, c);
    assert.equal(pendC.code, '2.05');
    await s.admin('approve', c.id, { fingerprint: keyFingerprint(c.pk) }, { by: 'admin:test' });
    const pendE = await provision(s.port, e);
    assert.equal(pendE.body.retry, 60);
    await s.admin('reject', f.id, 'not ours', { by: 'admin:test' });
    await s.admin('revoke', a.id, 'stolen', { by: 'admin:test' });
    const keysBefore = (await coapRequest({ port: s.port, path: '/idprov/keys' })).payload;
    await s.kill9();

    s = await ServerChild.start(flags); // no allowlist this time: what was imported must have persisted
    try {
      const keysAfter = (await coapRequest({ port: s.port, path: '/idprov/keys' })).payload;
      assert.deepEqual(keysAfter, keysBefore, 'the token signing key survived');
      assert.ok(decodeKeySet(keysAfter).some((k) => Buffer.from(k.kid).equals(Buffer.from(parseSign1(tokB.body.token!).kid!))));

      const revoked = await provision(s.port, a);
      assert.equal(revoked.code, '4.03');
      assert.equal(revoked.body.err, 7, 'the revocation survived');
      assert.equal((await refresh(s.port, a, tokA.body.token!)).body.err, 7, 'refresh stops for the revoked device');

      const refreshedB = await refresh(s.port, b, tokB.body.token!);
      assert.equal(refreshedB.code, '2.01', 'the provisioned device survived and refreshes');

      const approvedC = await provision(s.port, c, pendC.body.nonce!);
      assert.equal(approvedC.code, '2.01', 'the approval survived');

      const stillE = await provision(s.port, e, pendE.body.nonce!);
      assert.equal(stillE.code, '2.05');
      assert.equal(stillE.body.retry, 90, 'the pending record (count) survived');

      assert.equal((await provision(s.port, f)).body.err, 6, 'the rejection survived');

      const entryB = (await s.admin('store.getAllow', b.id))['result'] as { consumedAt?: number };
      assert.equal(typeof entryB.consumedAt, 'number', 'the allowlist consumption survived');
      const counts = (await s.admin('store.counts'))['result'] as Record<string, number>;
      assert.equal(counts['devices'], 3);
      assert.equal(counts['revocations'], 1);
    } finally {
      await s.kill9();
    }
  });
});
