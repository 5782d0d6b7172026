/**
 * Interop of the DTLS server with real peers on loopback (docs/spec/idprov-coap-v1.md §6, issue #4): OpenSSL
 * s_client, libcoap's coap-client on OpenSSL and GnuTLS (PSK and anonymous certificate mode), an
 * mbedTLS 2.28 client compiled here from Debian libmbedtls-dev, and node-dtls-client; and a full
 * provisioning over DTLS-PSK where the PSK session alone proves the out-of-band secret.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { dtls } from 'node-dtls-client';
import { loadConfig } from '../../../src/config.ts';
import { silentLogger } from '../../../src/log.ts';
import { parseResponse } from '../../../src/protocol/messages.ts';
import { startServer, type RunningServer } from '../../../src/server.ts';
import { DtlsClient, HandshakeError } from '../../../tools/dtls-peers/client.ts';
import { tempDir } from '../../support/temp-dir.ts';
import { TestDevice } from '../../support/device.ts';
import { LossyProxy, PSK, PSK_ID, coapGet, coapPost, coapReply, run, startDtls, testCertificate, type TestServer } from '../../support/dtls-server.ts';

const pskHex = PSK.toString('hex');

/** libcoap's coap-client exits 0 on failure; `-v 6` logs the response line ("v:1 t:ACK c:2.05 …"). */
async function coapClient(bin: string, args: string[]): Promise<{ code: string | undefined; out: string }> {
  const r = await run(bin, ['-v', '6', '-B', '8', ...args], { timeoutMs: 15_000 });
  const m = /^v:1 t:\w+ c:([2-5]\.\d\d)/m.exec(r.out);
  return { code: m?.[1], out: r.out };
}

describe('DTLS interop with real peers on loopback', function () {
  this.timeout(60_000);
  let s: TestServer;
  before(async () => {
    s = await startDtls();
  });
  after(async () => {
    await s.close();
  });

  describe('openssl s_client -dtls1_2', () => {
    const sClient = (args: string[]) => run('openssl', ['s_client', '-dtls1_2', '-connect', `127.0.0.1:${s.port}`, ...args], { input: '', timeoutMs: 15_000 });

    for (const suite of ['PSK-AES128-CCM8', 'PSK-AES128-GCM-SHA256']) {
      it(`completes a ${suite} handshake with the device ID as identity and the extended master secret`, async () => {
        const r = await sClient(['-cipher', suite, '-psk_identity', PSK_ID, '-psk', pskHex]);
        assert.match(r.out, new RegExp(`Cipher is ${suite}`), r.out);
        assert.match(r.out, /Extended master secret: yes/);
        assert.match(r.out, /Secure Renegotiation IS supported/);
      });
    }

    for (const suite of ['ECDHE-ECDSA-AES128-CCM8', 'ECDHE-ECDSA-AES128-GCM-SHA256']) {
      it(`completes an anonymous ${suite} handshake against the P-256 certificate`, async () => {
        const r = await sClient(['-cipher', suite]);
        assert.match(r.out, new RegExp(`Cipher is ${suite}`), r.out);
        assert.match(r.out, /Server public key is 256 bit/);
        assert.match(r.out, /Extended master secret: yes/);
      });
    }

    it('fails a PSK handshake with a wrong key', async () => {
      const r = await sClient(['-cipher', 'PSK-AES128-CCM8', '-psk_identity', PSK_ID, '-psk', 'deadbeefdeadbeefdeadbeef']);
      assert.match(r.out, /alert bad record mac/, r.out);
      assert.notEqual(r.code, 0);
    });

    it('completes an ECDHE handshake whose server flight is fragmented to a 120-byte MTU', async () => {
      const small = await startDtls({ mtu: 120 });
      try {
        const r = await run('openssl', ['s_client', '-dtls1_2', '-connect', `127.0.0.1:${small.port}`, '-cipher', 'ECDHE-ECDSA-AES128-CCM8', '-mtu', '400'], { input: '', timeoutMs: 15_000 });
        assert.match(r.out, /Cipher is ECDHE-ECDSA-AES128-CCM8/, r.out);
      } finally {
        await small.close();
      }
    });
  });

  for (const flavour of ['openssl', 'gnutls']) {
    describe(`libcoap coap-client-${flavour}`, () => {
      const bin = `coap-client-${flavour}`;
      it('gets /hello over a PSK session whose identity reaches the handler', async () => {
        const r = await coapClient(bin, ['-k', PSK.toString('utf8'), '-u', PSK_ID, `coaps://127.0.0.1:${s.port}/hello`]);
        assert.equal(r.code, '2.05', r.out);
        assert.match(r.out, new RegExp(`hi ${PSK_ID}`));
      });
      it('gets /hello in anonymous certificate mode (ECDHE_ECDSA)', async () => {
        const r = await coapClient(bin, [`coaps://127.0.0.1:${s.port}/hello`]);
        assert.equal(r.code, '2.05', r.out);
        assert.match(r.out, /hi anon/);
      });
      it('gets no response with a wrong PSK', async () => {
        const r = await coapClient(bin, ['-k', 'not the secret at all', '-u', PSK_ID, `coaps://127.0.0.1:${s.port}/hello`]);
        assert.equal(r.code, undefined, r.out);
      });
    });
  }

  describe('mbedTLS 2.28 client (the ESP-IDF line), compiled from Debian libmbedtls-dev', () => {
    let bin: string;
    const tmp = tempDir('idprov-mbedtls-');
    before(function () {
      this.timeout(120_000);
      bin = execFileSync('bash', [join(import.meta.dirname, '../../../tools/dtls-peers/build.sh'), tmp.dir], { encoding: 'utf8' }).trim();
    });
    after(() => tmp.cleanup());
    const mbed = (args: string[], input = 'GET /hello - -\n') => run(bin, ['127.0.0.1', String(s.port), ...args], { input, timeoutMs: 30_000 });

    for (const [suite, name] of [
      ['0xC0A8', 'TLS-PSK-WITH-AES-128-CCM-8'],
      ['0x00A8', 'TLS-PSK-WITH-AES-128-GCM-SHA256'],
    ] as const) {
      it(`gets /hello over ${name}`, async () => {
        const r = await mbed(['--psk', PSK_ID, pskHex, '--suite', suite]);
        assert.equal(r.code, 0, r.out);
        assert.match(r.out, new RegExp(`suite ${name}`));
        assert.match(r.out, new RegExp(`RESP 2.05 ${Buffer.from(`hi ${PSK_ID}`).toString('hex')}`));
      });
    }
    for (const [suite, name] of [
      ['0xC0AE', 'TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8'],
      ['0xC02B', 'TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256'],
    ] as const) {
      it(`gets /hello anonymously over ${name}`, async () => {
        const r = await mbed(['--anon', '--suite', suite]);
        assert.equal(r.code, 0, r.out);
        assert.match(r.out, new RegExp(`suite ${name}`));
        assert.match(r.out, new RegExp(`RESP 2.05 ${Buffer.from('hi anon').toString('hex')}`));
      });
    }
    it('reassembles a handshake that mbedTLS fragments to a 150-byte MTU, in both directions', async () => {
      const small = await startDtls({ mtu: 150 });
      try {
        const r = await run(bin, ['127.0.0.1', String(small.port), '--anon', '--suite', '0xC0AE', '--mtu', '150'], { input: 'GET /hello - -\n', timeoutMs: 30_000 });
        assert.equal(r.code, 0, r.out);
        assert.match(r.out, /RESP 2\.05/);
      } finally {
        await small.close();
      }
    });
    it('fails the handshake with a wrong PSK, and with an unknown identity the same way', async () => {
      const wrong = await mbed(['--psk', PSK_ID, 'deadbeefdeadbeef', '--suite', '0xC0A8']);
      const unknown = await mbed(['--psk', 'nobody', pskHex, '--suite', '0xC0A8']);
      assert.equal(wrong.code, 2, wrong.out);
      assert.equal(unknown.code, 2, unknown.out);
      assert.equal(wrong.out.replace(/\s+$/, ''), unknown.out.replace(/\s+$/, ''), 'no identity enumeration');
    });
    it('completes a PSK handshake through a proxy that drops every third datagram', async () => {
      const proxy = await LossyProxy.start(s.port, 3);
      try {
        const r = await run(bin, ['127.0.0.1', String(proxy.port), '--psk', PSK_ID, pskHex, '--suite', '0xC0A8'], { input: 'GET /hello - -\n', timeoutMs: 45_000 });
        assert.equal(r.code, 0, r.out);
        assert.match(r.out, /RESP 2\.05/);
        assert.ok(proxy.dropped > 0);
      } finally {
        proxy.close();
      }
    });
  });

  describe('node-dtls-client', () => {
    for (const cipher of ['TLS_PSK_WITH_AES_128_CCM_8', 'TLS_PSK_WITH_AES_128_GCM_SHA256'] as const) {
      it(`gets /hello over ${cipher}`, async () => {
        const sock = dtls.createSocket({ type: 'udp4', address: '127.0.0.1', port: s.port, psk: { [PSK_ID]: PSK.toString('utf8') }, timeout: 10_000, ciphers: [cipher] });
        try {
          const reply = await new Promise<Buffer>((resolve, reject) => {
            sock.on('connected', () => sock.send(coapGet('/hello')));
            sock.on('message', (m: Buffer) => resolve(m));
            sock.on('error', reject);
          });
          assert.equal(coapReply(reply).code, '2.05');
          assert.equal(coapReply(reply).payload.toString(), `hi ${PSK_ID}`);
        } finally {
          sock.close();
        }
      });
    }
  });
});

describe('provisioning over coaps with DTLS-PSK (docs/spec/idprov-coap-v1.md §5 rule 1, §6)', function () {
  this.timeout(60_000);
  let server: RunningServer;
  const t = tempDir();
  const SECRET = 'printed-on-the-box-2024';
  before(async () => {
    server = await startServer(
      loadConfig({ env: {}, flags: { dataDir: join(t.dir, 'data'), coapPort: 0, coapsPort: 0, adminPort: 0, bind: '127.0.0.1', mdns: false } }),
      silentLogger,
    );
  });
  after(async () => {
    await server.close();
    t.cleanup();
  });
  const allow = async (id: string) =>
    server.importer.importEntries([{ id, secret: SECRET, type: 0, createdAt: server.service.now() }], { actor: { by: 'test' } });

  it('exposes the SPKI fingerprint of a P-256 certificate created in the data directory', () => {
    assert.match(server.dtlsFingerprint, /^[A-Za-z0-9_-]{43}$/);
    assert.ok(server.coapsPort > 0);
    assert.notEqual(server.dtlsFingerprint, testCertificate().fingerprint);
  });

  it('provisions a secret-only device whose request carries no OOB proof: the PSK session proves it (2.01)', async () => {
    const dev = new TestDevice('psk-dev-01');
    await allow(dev.id);
    const c = await DtlsClient.connect({ host: '127.0.0.1', port: server.coapsPort, psk: { identity: dev.id, key: Buffer.from(SECRET) } });
    try {
      const challenge = coapReply(await c.request(coapPost('/idprov/request', dev.request())));
      assert.equal(challenge.code, '4.01');
      const nonce = parseResponse(challenge.payload).nonce!;
      const r = coapReply(await c.request(coapPost('/idprov/request', dev.request({ nonce }))));
      assert.equal(r.code, '2.01');
      assert.equal(parseResponse(r.payload).status, 0);
      assert.ok(parseResponse(r.payload).token);
    } finally {
      c.close();
    }
  });

  it('provisions the same way from the mbedTLS client, as an ESP32 would', async function () {
    this.timeout(120_000);
    const tmp = tempDir('idprov-mbedtls-');
    const bin = execFileSync('bash', [join(import.meta.dirname, '../../../tools/dtls-peers/build.sh'), tmp.dir], { encoding: 'utf8' }).trim();
    const dev = new TestDevice('esp32-0042');
    await allow(dev.id);
    const p = spawn(bin, ['127.0.0.1', String(server.coapsPort), '--psk', dev.id, Buffer.from(SECRET).toString('hex'), '--suite', '0xC0A8'], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const lines = createInterface({ input: p.stdout })[Symbol.asyncIterator]();
      const nextLine = async () => (await lines.next()).value as string;
      assert.match(await nextLine(), /^suite TLS-PSK-WITH-AES-128-CCM-8/);
      p.stdin.write(`POST /idprov/request 18 ${dev.request().toString('hex')}\n`);
      const first = /^RESP (\S+) ([0-9a-f]*)/.exec(await nextLine())!;
      assert.equal(first[1], '4.01');
      const nonce = parseResponse(Buffer.from(first[2]!, 'hex')).nonce!;
      p.stdin.write(`POST /idprov/request 18 ${dev.request({ nonce }).toString('hex')}\n`);
      const second = /^RESP (\S+) ([0-9a-f]*)/.exec(await nextLine())!;
      assert.equal(second[1], '2.01');
      assert.ok(parseResponse(Buffer.from(second[2]!, 'hex')).token);
      p.stdin.end();
    } finally {
      p.kill();
      tmp.cleanup();
    }
  });

  it('does not let a PSK session for one device prove the secret of another (4.01)', async () => {
    const a = new TestDevice('psk-dev-a');
    const b = new TestDevice('psk-dev-b');
    await allow(a.id);
    await allow(b.id);
    const c = await DtlsClient.connect({ host: '127.0.0.1', port: server.coapsPort, psk: { identity: a.id, key: Buffer.from(SECRET) } });
    try {
      const nonce = parseResponse(coapReply(await c.request(coapPost('/idprov/request', b.request()))).payload).nonce!;
      const r = coapReply(await c.request(coapPost('/idprov/request', b.request({ nonce }))));
      assert.equal(r.code, '4.01');
    } finally {
      c.close();
    }
  });

  it('refuses the handshake for a device whose PSK is wrong', async () => {
    const dev = new TestDevice('psk-dev-wrong');
    await allow(dev.id);
    await assert.rejects(
      DtlsClient.connect({ host: '127.0.0.1', port: server.coapsPort, psk: { identity: dev.id, key: Buffer.from('printed-on-another-box') } }),
      (e: unknown) => e instanceof HandshakeError && e.alert === 20,
    );
  });

  it('serves anonymous ECDHE clients that pin the advertised fingerprint', async () => {
    const c = await DtlsClient.connect({ host: '127.0.0.1', port: server.coapsPort, suites: [0xc0ae], fingerprint: server.dtlsFingerprint });
    try {
      assert.equal(coapReply(await c.request(coapGet('/idprov/keys'))).code, '2.05');
    } finally {
      c.close();
    }
  });
});
