/**
 * Issue 11 F5 and F6 on the real server (src/server.ts with its default limits, over loopback UDP):
 * no CoAP/UDP answer is larger than three times its request, unauthenticated GETs are limited per
 * source address (over the limit: the smallest form, never a refusal a spoofer could cause), and new
 * DTLS handshakes too. The attacker is 127.0.0.1, a genuine device
 * 127.0.0.2 (another loopback address, another source).
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { join } from 'node:path';
import { generate, parse } from 'coap-packet';
import { loadConfig } from '../../src/config.ts';
import { silentLogger } from '../../src/log.ts';
import { decodeKeySet } from '../../src/protocol/cwt.ts';
import { COAP_MAX_KEYS } from '../../src/device-api/resources.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { SMALLEST_EXTRA } from '../../src/transport/coap/engine.ts';
import { DtlsClient } from '../../tools/dtls-peers/client.ts';
import { halfOpenHandshake, until } from '../support/dtls-server.ts';
import { tempDir } from '../support/temp-dir.ts';
import { coapRequest } from '../support/coap-client.ts';

const GENUINE = '127.0.0.2';

async function start(flags: Record<string, unknown> = {}): Promise<{ s: RunningServer; close(): Promise<void> }> {
  const tmp = tempDir('idprov-reflection-');
  const cfg = loadConfig({ env: {}, flags: { dataDir: join(tmp.dir, 'data'), bind: '127.0.0.1', coapPort: 0, coapsPort: 0, adminPort: 0, mdns: false, coapMulticast: false, logLevel: 'silent', ...flags } });
  const s = await startServer(cfg, silentLogger);
  return {
    s,
    async close() {
      await s.close();
      tmp.cleanup();
    },
  };
}

/** A UDP socket that collects every datagram it gets. */
async function socket(address = '127.0.0.1'): Promise<{ sock: Socket; inbox: Buffer[] }> {
  const sock = createSocket('udp4');
  const inbox: Buffer[] = [];
  sock.on('message', (m: Buffer) => inbox.push(m));
  await new Promise<void>((r) => sock.bind(0, address, () => r()));
  sock.setRecvBufferSize(4 << 20);
  return { sock, inbox };
}

const uintBuf = (v: number): Buffer => (v === 0 ? Buffer.alloc(0) : v < 256 ? Buffer.from([v]) : Buffer.from([v >> 8, v & 255]));

/** GET /idprov/keys without a token (16 bytes), optionally asking for a block. */
function getKeys(mid: number, block2?: number, confirmable = true): Buffer {
  const options = [
    { name: 'Uri-Path', value: Buffer.from('idprov') },
    { name: 'Uri-Path', value: Buffer.from('keys') },
    ...(block2 !== undefined ? [{ name: 'Block2', value: uintBuf(block2) }] : []),
  ];
  return generate({ code: 'GET', confirmable, messageId: mid, token: Buffer.alloc(0), options } as never);
}

describe('reflection and handshake limits of the real server (issue 11 F5, F6)', function () {
  this.timeout(120_000);

  it('answers a 16-byte GET /idprov/keys with 21 keys in blocks of at most three times the request, listing the newest 8 keys', async () => {
    const { s, close } = await start();
    const { sock, inbox } = await socket();
    try {
      for (let i = 0; i < 20; i++) await s.admin.rotateKey({ by: 'test' });
      assert.equal(s.keyring.verificationKeys(Math.floor(Date.now() / 1000)).length, 21);
      const parts: Buffer[] = [];
      let block2: number | undefined;
      for (let i = 0; i < 100; i++) {
        const req = getKeys(1000 + i, block2);
        if (i === 0) assert.equal(req.length, 16);
        inbox.length = 0;
        sock.send(req, s.coapPort, '127.0.0.1');
        await until(() => inbox.length > 0, `block ${i}`);
        const res = inbox[0]!;
        assert.ok(res.length <= 3 * req.length, `block ${i}: ${res.length} bytes for a ${req.length}-byte request`);
        const m = parse(res);
        assert.equal(m.code, '2.05');
        parts.push(m.payload);
        const b = m.options.find((o) => o.name === 'Block2');
        const v = b ? (b.value as Buffer).reduce((a, x) => a * 256 + x, 0) : 0;
        if ((v & 8) === 0) break;
        block2 = (Math.floor(v / 16) + 1) * 16 + (v & 7);
      }
      const keys = decodeKeySet(Buffer.concat(parts));
      assert.equal(keys.length, COAP_MAX_KEYS);
      assert.equal(Buffer.from(keys[0]!.kid).toString('hex'), s.keyring.current.kid, 'the signing key first');
    } finally {
      sock.close();
      await close();
    }
  });

  it('answers in the smallest form once one address has sent its burst of 5,000 GETs, and still answers a genuine device on another address', async () => {
    const { s, close } = await start();
    const { sock, inbox } = await socket();
    try {
      const started = Date.now();
      for (let i = 0; i < 5000; i++) {
        sock.send(getKeys(i, undefined, false), s.coapPort, '127.0.0.1');
        if (i % 250 === 249) await new Promise((r) => setImmediate(r));
      }
      // Every request the server read gets exactly one answer: a 2.05, over the burst in the smallest
      // form (a 16-byte block without Size2, at most SMALLEST_EXTRA bytes longer than the request).
      await until(() => s.coap.stats.requests >= 1000 && inbox.length === s.coap.stats.requests, 'an answer to every request read');
      const elapsedS = (Date.now() - started) / 1000;
      const msgs = inbox.map((d) => parse(d));
      const smallest = msgs.filter((m) => !m.options.some((o) => o.name === 'Size2')).length;
      const full = msgs.length - smallest;
      assert.ok(smallest > 0, 'some in the smallest form');
      // The burst (100) plus at most 20 a second while the test ran.
      assert.ok(full <= 100 + 20 * Math.ceil(elapsedS + 1), `${full} answered in full in ${elapsedS} s`);
      for (const m of msgs) assert.equal(m.code, '2.05');
      for (const d of inbox) assert.ok(d.length <= 48);
      for (let i = 0; i < inbox.length; i++) if (!msgs[i]!.options.some((o) => o.name === 'Size2')) assert.ok(inbox[i]!.length <= 16 + SMALLEST_EXTRA && msgs[i]!.payload.length <= 16);
      const r = await coapRequest({ port: s.coapPort, path: '/.well-known/core', localAddress: GENUINE });
      assert.equal(r.code, '2.05');
      assert.match(r.payload.toString(), /<\/idprov\/request>;rt="idprov\.request"/);
      assert.match(r.payload.toString(), /<\/idprov\/keys>;rt="idprov\.keys";ct=102/);
    } finally {
      sock.close();
      await close();
    }
  });

  it('drops cookie-verified DTLS hellos from one address past its handshake burst, and lets another address in', async () => {
    const { s, close } = await start({ dtlsHandshakeRate: 1, dtlsHandshakeBurst: 3 });
    const socks: Socket[] = [];
    try {
      const started = Date.now();
      const hs = await Promise.all(Array.from({ length: 20 }, () => halfOpenHandshake(s.coapsPort, { suites: [0xc0ae] })));
      for (const h of hs) socks.push(h.sock);
      await until(() => s.dtls.stats().handshakesStarted + s.dtls.stats().rateLimited === 20, 'all twenty hellos');
      const st = s.dtls.stats();
      assert.ok(st.rateLimited > 0);
      assert.ok(st.handshakesStarted <= 3 + Math.ceil((Date.now() - started) / 1000), `${st.handshakesStarted} started`);
      const c = await DtlsClient.connect({ host: '127.0.0.1', port: s.coapsPort, localAddress: GENUINE, suites: [0xc0ae] });
      c.close();
    } finally {
      for (const k of socks) k.close();
      await close();
    }
  });
});
