/**
 * Behaviour of the DTLS transport with the project's own client (tools/dtls-peers/client.ts), which
 * can do what no Debian peer does: Connection ID with a port change, fragmenting its own flight,
 * replaying and tampering records. Every wait is on an observable event, never on elapsed time.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { silentLogger } from '../../../src/log.ts';
import { CoapCode } from '../../../src/protocol/coap-codes.ts';
import type { Peer } from '../../../src/transport/datagram.ts';
import { DtlsTransport } from '../../../src/transport/dtls/server.ts';
import { ALERT, CT, HT, parseHandshakeFragments, parseRecords, Reader, RECORD_HEADER } from '../../../src/transport/dtls/wire.ts';
import { DtlsClient, HandshakeError, clientHelloDatagram } from '../../../tools/dtls-peers/client.ts';
import { LossyProxy, PSK, PSK_ID, coapGet, coapReply, startDtls, testCertificate, until, type TestServer } from '../../support/dtls-server.ts';

const SUITES = [
  [0xc0a8, 'TLS_PSK_WITH_AES_128_CCM_8'],
  [0x00a8, 'TLS_PSK_WITH_AES_128_GCM_SHA256'],
  [0xc0ae, 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8'],
  [0xc02b, 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256'],
] as const;
const isPsk = (id: number) => id === 0xc0a8 || id === 0x00a8;
const connect = (port: number, suite: number, extra: Partial<Parameters<typeof DtlsClient.connect>[0]> = {}) =>
  DtlsClient.connect({ host: '127.0.0.1', port, suites: [suite], ...(isPsk(suite) ? { psk: { identity: PSK_ID, key: PSK } } : {}), ...extra });

/** A raw UDP socket that does the cookie exchange and stops after sending the ClientHello with the cookie. */
async function halfOpen(port: number): Promise<{ sock: Socket; serverFlights: () => number }> {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const random = randomBytes(32);
  let flights = 0;
  const cookie = await new Promise<Buffer>((resolve) => {
    sock.on('message', (m: Buffer) => {
      const f = parseHandshakeFragments(parseRecords(m, 0)[0]!.fragment, 65536)![0]!;
      if (f.msgType === HT.helloVerifyRequest) {
        const r = new Reader(f.body);
        r.u16();
        resolve(r.vec8());
      } else if (f.msgType === HT.serverHello) flights++;
    });
    sock.send(clientHelloDatagram({ random, suites: [0xc0a8] }), port, '127.0.0.1');
  });
  sock.send(clientHelloDatagram({ random, cookie, suites: [0xc0a8], recordSeq: 1, msgSeq: 1 }), port, '127.0.0.1');
  return { sock, serverFlights: () => flights };
}

function gcHeap(): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe('DTLS transport (own client)', function () {
  this.timeout(60_000);
  let s: TestServer;
  before(async () => {
    s = await startDtls();
  });
  after(async () => {
    await s.close();
  });

  describe('handshakes', () => {
    for (const [id, name] of SUITES) {
      it(`completes ${name} with the extended master secret and secure renegotiation, and serves CoAP`, async () => {
        const c = await connect(s.port, id);
        try {
          assert.equal(c.suite, id);
          assert.ok(c.emsNegotiated);
          assert.ok(c.secureRenegotiation);
          const r = coapReply(await c.request(coapGet('/hello')));
          assert.equal(r.code, '2.05');
          assert.equal(r.payload.toString(), isPsk(id) ? `hi ${PSK_ID}` : 'hi anon');
        } finally {
          c.close();
        }
      });
    }

    it('hands the CoAP handler a structured peer: the client address and port, its session and PSK identity', async () => {
      const seen: Peer[] = [];
      s.coap.addResource({ path: '/who', methods: { GET: (req) => (seen.push({ ...req.peer }), { code: CoapCode.Content }) } });
      const c = await connect(s.port, 0xc0a8);
      try {
        assert.equal(coapReply(await c.request(coapGet('/who'))).code, '2.05');
        assert.equal(coapReply(await c.request(coapGet('/who'))).code, '2.05');
        assert.equal(seen.length, 2);
        const p = seen[0]!;
        assert.equal(p.address, '127.0.0.1');
        assert.equal(p.port, c.localPort);
        assert.equal(p.family, 'IPv4');
        assert.equal(p.pskIdentity, PSK_ID);
        assert.equal(typeof p.sessionKey, 'string');
        assert.equal(seen[1]!.sessionKey, p.sessionKey);
      } finally {
        c.close();
      }
    });

    it('completes a handshake without the extended master secret unless it is required', async () => {
      const c = await connect(s.port, 0xc0a8, { ems: false });
      assert.equal(c.emsNegotiated, false);
      c.close();
      const strict = await startDtls({ requireExtendedMasterSecret: true });
      try {
        await assert.rejects(connect(strict.port, 0xc0a8, { ems: false }), (e: unknown) => e instanceof HandshakeError && e.alert === ALERT.handshakeFailure);
      } finally {
        await strict.close();
      }
    });

    it('refuses a client with no shared suite, and ECDHE when no certificate is configured', async () => {
      await assert.rejects(DtlsClient.connect({ host: '127.0.0.1', port: s.port, suites: [0xc02c] }), (e: unknown) => e instanceof HandshakeError && e.alert === ALERT.handshakeFailure);
      const pskOnly = await startDtls({ certificate: undefined as never });
      try {
        await assert.rejects(connect(pskOnly.port, 0xc0ae), (e: unknown) => e instanceof HandshakeError && e.alert === ALERT.handshakeFailure);
        (await connect(pskOnly.port, 0xc0a8)).close();
      } finally {
        await pskOnly.close();
      }
    });

    it('fails a wrong PSK and an unknown identity alike, with bad_record_mac at the Finished', async () => {
      const wrong = connect(s.port, 0xc0a8, { psk: { identity: PSK_ID, key: Buffer.from('wrong key, same id') } });
      const unknown = connect(s.port, 0xc0a8, { psk: { identity: 'nobody', key: PSK } });
      for (const p of [wrong, unknown]) await assert.rejects(p, (e: unknown) => e instanceof HandshakeError && e.alert === ALERT.badRecordMac);
      assert.equal(s.t.stats().handshakes, 0);
    });

    it('checks the certificate fingerprint and the ServerKeyExchange signature', async () => {
      (await connect(s.port, 0xc0ae, { fingerprint: testCertificate().fingerprint })).close();
      await assert.rejects(connect(s.port, 0xc0ae, { fingerprint: 'A'.repeat(43) }), /fingerprint mismatch/);
    });

    it('reassembles a client flight sent in 7-byte fragments, one per datagram', async () => {
      for (const id of [0xc0a8, 0xc0ae]) {
        const c = await connect(s.port, id, { fragment: 7 });
        assert.equal(coapReply(await c.request(coapGet('/hello'))).code, '2.05');
        c.close();
      }
    });

    it('fragments its own flight to the configured MTU', async () => {
      const small = await startDtls({ mtu: 200 });
      const sizes: number[] = [];
      const orig = (small.t as unknown as { inner: { send(d: Buffer, p: unknown): void } }).inner;
      const send = orig.send.bind(orig);
      orig.send = (d, p) => {
        sizes.push(d.length);
        send(d, p);
      };
      try {
        const c = await connect(small.port, 0xc0ae);
        assert.equal(coapReply(await c.request(coapGet('/hello'))).code, '2.05');
        c.close();
        assert.ok(sizes.length > 3);
        assert.ok(sizes.every((n) => n <= 200), `datagrams: ${sizes.join(',')}`);
      } finally {
        await small.close();
      }
    });

    for (const n of [2, 3, 5]) {
      it(`completes PSK and ECDHE handshakes through a proxy that drops every ${n === 2 ? '2nd' : n === 3 ? '3rd' : `${n}th`} datagram`, async () => {
        const proxy = await LossyProxy.start(s.port, n);
        try {
          for (const id of [0xc0a8, 0xc0ae]) {
            const c = await connect(proxy.port, id, { retransmitMs: 200, timeoutMs: 30_000 });
            assert.equal(coapReply(await c.request(coapGet('/hello'), { retransmitMs: 200 })).code, '2.05');
            c.close();
          }
          assert.ok(proxy.dropped > 0);
        } finally {
          proxy.close();
        }
      });
    }

    it('retransmits its flight on the RFC 6347 timer while the client is silent, then gives up', async () => {
      const quick = await startDtls({ retransmitInitialMs: 50, retransmitMaxMs: 200, handshakeTimeoutMs: 1000 });
      const h = await halfOpen(quick.port);
      try {
        await until(() => h.serverFlights() >= 3, 'three copies of flight 4');
        await until(() => quick.t.stats().handshakes === 0, 'the handshake to time out');
        assert.equal(quick.t.stats().handshakesFailed, 1);
      } finally {
        h.sock.close();
        await quick.close();
      }
    });
  });

  describe('Connection ID (RFC 9146)', () => {
    for (const [id, name] of SUITES) {
      it(`keeps a ${name} session when the client changes its source port`, async () => {
        const c = await connect(s.port, id, { cid: Buffer.alloc(0) });
        try {
          assert.equal(c.serverCid?.length, 8);
          const before = c.localPort;
          assert.equal(coapReply(await c.request(coapGet('/hello'))).code, '2.05');
          const migrated = s.t.stats().migrated;
          await c.rebind();
          assert.notEqual(c.localPort, before);
          const r = coapReply(await c.request(coapGet('/hello')));
          assert.equal(r.code, '2.05');
          assert.equal(r.payload.toString(), isPsk(id) ? `hi ${PSK_ID}` : 'hi anon');
          assert.equal(s.t.stats().migrated, migrated + 1);
        } finally {
          c.close();
        }
      });
    }

    it('sends CID records to a client that asked for its own CID', async () => {
      const c = await connect(s.port, 0xc0a8, { cid: Buffer.from('c1c2c3c4', 'hex') });
      await c.rebind();
      assert.equal(coapReply(await c.request(coapGet('/hello'))).code, '2.05');
      c.close();
    });

    it('loses a session without CID when the client changes its source port', async () => {
      const c = await connect(s.port, 0xc0a8);
      assert.equal(c.serverCid, undefined);
      await c.rebind();
      await assert.rejects(c.request(coapGet('/hello'), { retransmitMs: 100, timeoutMs: 500 }), /no CoAP response/);
      c.abandon();
    });

    it('does not move a session for a replayed or forged CID record from another address', async () => {
      const sent: Buffer[] = [];
      const c = await connect(s.port, 0xc0a8, { cid: Buffer.alloc(0), tap: (d) => sent.push(d) });
      try {
        await c.request(coapGet('/hello'));
        const app = sent[sent.length - 1]!;
        assert.equal(app[0], CT.tls12Cid);
        const migrated = s.t.stats().migrated;
        const other = createSocket('udp4');
        await new Promise<void>((r) => other.bind(0, '127.0.0.1', () => r()));
        other.send(app, s.port, '127.0.0.1'); // a replay from elsewhere
        const forged = Buffer.from(app);
        forged[forged.length - 1]! ^= 1;
        other.send(forged, s.port, '127.0.0.1');
        assert.equal(coapReply(await c.request(coapGet('/hello'))).code, '2.05');
        assert.equal(s.t.stats().migrated, migrated);
        other.close();
      } finally {
        c.close();
      }
    });
  });

  describe('record layer', () => {
    it('delivers a record once: replays are dropped by the window, tampered records silently', async () => {
      const t = await DtlsTransport.bind({ address: '127.0.0.1', port: 0, pskLookup: async () => PSK, log: silentLogger });
      const got: string[] = [];
      t.onMessage((d) => got.push(d.toString()));
      const sent: Buffer[] = [];
      const c = await DtlsClient.connect({ host: '127.0.0.1', port: t.address().port, psk: { identity: PSK_ID, key: PSK }, tap: (d) => sent.push(d) });
      try {
        c.send(Buffer.from('one'));
        await until(() => got.length === 1, 'first record');
        const rec = sent[sent.length - 1]!;
        c.sendRaw(rec); // replay
        const bad = Buffer.from(rec);
        bad[RECORD_HEADER + 9]! ^= 0x40; // ciphertext bit flip
        c.sendRaw(bad);
        c.send(Buffer.from('two'));
        await until(() => got.length >= 2, 'second record');
        assert.deepEqual(got, ['one', 'two']);
        assert.equal(t.stats().sessions, 1, 'a bad record does not end the session');
      } finally {
        c.close();
        await t.close();
      }
    });

    it('answers a renegotiation attempt with a no_renegotiation warning and keeps the session', async () => {
      const c = await connect(s.port, 0xc0a8);
      try {
        const alerts: number[] = [];
        c.onAlert((_l, d) => alerts.push(d));
        const hello = parseRecords(clientHelloDatagram({ random: randomBytes(32), suites: [0xc0a8], msgSeq: 3 }), 0)[0]!.fragment;
        c.sendRaw(c.protectedRecord(CT.handshake, hello));
        await until(() => alerts.length > 0, 'an alert');
        assert.deepEqual(alerts, [ALERT.noRenegotiation]);
        assert.equal(coapReply(await c.request(coapGet('/hello'))).code, '2.05');
      } finally {
        c.close();
      }
    });

    it('closes the session on close_notify and answers with close_notify', async () => {
      const t = await startDtls();
      try {
        const c = await connect(t.port, 0xc0a8);
        assert.equal(t.t.stats().sessions, 1);
        c.close();
        await until(() => t.t.stats().sessions === 0, 'the session to close');
        assert.equal(t.t.stats().addresses, 0);
      } finally {
        await t.close();
      }
    });

    it('sends close_notify to every session when the transport closes', async () => {
      const t = await startDtls();
      const c = await connect(t.port, 0xc0a8);
      await t.close();
      await until(() => c.closedByPeer, 'close_notify');
      c.abandon();
    });
  });

  describe('limits and denial of service', () => {
    it('answers a ClientHello without a valid cookie statelessly with a HelloVerifyRequest', async () => {
      const t = await startDtls();
      try {
        const sock = createSocket('udp4');
        await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
        const replies: Buffer[] = [];
        sock.on('message', (m: Buffer) => replies.push(m));
        sock.send(clientHelloDatagram({ random: randomBytes(32), suites: [0xc0a8] }), t.port, '127.0.0.1');
        sock.send(clientHelloDatagram({ random: randomBytes(32), cookie: Buffer.alloc(17, 1), suites: [0xc0a8] }), t.port, '127.0.0.1');
        await until(() => replies.length === 2, 'two HelloVerifyRequests');
        for (const m of replies) assert.equal(parseHandshakeFragments(parseRecords(m, 0)[0]!.fragment, 100)![0]!.msgType, HT.helloVerifyRequest);
        assert.ok(replies.every((m) => m.length < 60), 'HelloVerifyRequest is smaller than the ClientHello (no amplification)');
        const st = t.t.stats();
        assert.deepEqual([st.addresses, st.handshakes, st.sessions], [0, 0, 0]);
        sock.close();
      } finally {
        await t.close();
      }
    });

    it('keeps no state and no heap for 30,000 spoofed ClientHellos (one HMAC each)', async () => {
      const t = await startDtls();
      try {
        const hello = clientHelloDatagram({ random: randomBytes(32), suites: [0xc0a8, 0xc0ae] });
        const spoof = (i: number) => ({ address: `127.${(i >> 16) & 255}.${(i >> 8) & 255}.${(i & 255) | 1}`, port: 1024 + (i % 60000), family: 'IPv4' as const });
        for (let i = 0; i < 2000; i++) t.t.receive(hello, spoof(i)); // warm up JIT and buffers
        await new Promise((r) => setTimeout(r, 100));
        const heapBefore = gcHeap();
        const hvrBefore = t.t.stats().helloVerifyRequests;
        for (let i = 0; i < 30_000; i++) {
          hello.writeUInt32BE(i, RECORD_HEADER + 12 + 2 + 28); // a different random each time
          t.t.receive(hello, spoof(i));
          if (i % 5000 === 4999) await new Promise((r) => setImmediate(r));
        }
        await new Promise((r) => setTimeout(r, 200)); // let the socket drain its send queue
        const heapAfter = gcHeap();
        const st = t.t.stats();
        assert.equal(st.helloVerifyRequests - hvrBefore, 30_000);
        assert.deepEqual([st.addresses, st.handshakes, st.sessions, st.cids], [0, 0, 0, 0]);
        const grew = heapAfter - heapBefore;
        console.log(`      heap before ${(heapBefore / 1048576).toFixed(1)} MiB, after ${(heapAfter / 1048576).toFixed(1)} MiB (${(grew / 1024).toFixed(0)} KiB)`);
        assert.ok(grew < 2 * 1048576, `heap grew by ${grew} bytes`);
      } finally {
        await t.close();
      }
    });

    it('caps half-open handshakes and drops the oldest for a new one', async () => {
      const t = await startDtls({ maxHandshakes: 2 });
      const hs: Array<Awaited<ReturnType<typeof halfOpen>>> = [];
      try {
        for (let i = 0; i < 3; i++) {
          hs.push(await halfOpen(t.port));
          await until(() => hs[i]!.serverFlights() >= 1, 'flight 4');
        }
        assert.equal(t.t.stats().handshakes, 2);
        assert.equal(t.t.stats().evicted, 1);
        const c = await connect(t.port, 0xc0a8);
        assert.equal(t.t.stats().handshakes, 1, 'a real client still gets through');
        c.close();
      } finally {
        for (const h of hs) h.sock.close();
        await t.close();
      }
    });

    it('caps sessions and evicts the least recently active one with close_notify', async () => {
      const t = await startDtls({ maxSessions: 2 });
      try {
        const a = await connect(t.port, 0xc0a8);
        const b = await connect(t.port, 0xc0a8);
        await a.request(coapGet('/hello')); // a is now more recent than b
        const c = await connect(t.port, 0xc0a8);
        await until(() => b.closedByPeer, 'b to be evicted');
        assert.equal(a.closedByPeer, false);
        assert.equal(t.t.stats().sessions, 2);
        assert.equal(coapReply(await a.request(coapGet('/hello'))).code, '2.05');
        assert.equal(coapReply(await c.request(coapGet('/hello'))).code, '2.05');
        for (const x of [a, b, c]) x.close();
      } finally {
        await t.close();
      }
    });

    it('closes idle sessions with close_notify', async () => {
      const t = await startDtls({ idleTimeoutMs: 200 });
      try {
        const c = await connect(t.port, 0xc0a8);
        await until(() => c.closedByPeer, 'the idle session to close');
        assert.equal(t.t.stats().sessions, 0);
        c.abandon();
      } finally {
        await t.close();
      }
    });
  });
});
