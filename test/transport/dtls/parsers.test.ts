/**
 * Property and mutation tests of every DTLS parser: each takes network bytes and
 * returns a value or undefined, never throws; every prefix of a valid input and seeded random
 * mutations are tried. Then the same at the transport: mutated datagrams of a real handshake and
 * session, injected from the client's address and from others, never throw out of the transport,
 * and the server keeps serving.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CookieJar, RecordCipher, ReplayWindow, innerPlaintext, splitInnerPlaintext } from '../../../src/transport/dtls/crypto.ts';
import {
  parseAlert,
  parseClientHello,
  parseClientKeyExchange,
  parseHandshakeFragments,
  parseRecords,
  parseU16List,
  parseVec8Exact,
  vec16,
  vec8,
  RECORD_HEADER,
} from '../../../src/transport/dtls/wire.ts';
import { DtlsClient, clientHelloBody, clientHelloDatagram } from '../../../tools/dtls-peers/client.ts';
import { mutate, prng } from '../../support/mutation.ts';
import { PSK, PSK_ID, coapGet, coapReply, startDtls, type TestServer } from '../../support/dtls-server.ts';

const hello = clientHelloBody({ random: randomBytes(32), cookie: randomBytes(17), suites: [0xc0a8, 0xc0ae], cid: Buffer.alloc(0) });
const parsers: Array<[string, Buffer, (b: Buffer) => unknown]> = [
  ['parseRecords', Buffer.concat([clientHelloDatagram({ random: randomBytes(32), suites: [0xc0a8] }), Buffer.from('19fefd000100000000000501020304050607080003aabbcc', 'hex')]), (b) => parseRecords(b, 8)],
  ['parseHandshakeFragments', clientHelloDatagram({ random: randomBytes(32), suites: [0xc0a8] }).subarray(RECORD_HEADER), (b) => parseHandshakeFragments(b, 4096)],
  ['parseClientHello', hello, parseClientHello],
  ['parseClientKeyExchange (PSK)', vec16(Buffer.from(PSK_ID)), (b) => parseClientKeyExchange(b, 'psk')],
  ['parseClientKeyExchange (ECDHE)', vec8(Buffer.concat([Buffer.from([4]), randomBytes(64)])), (b) => parseClientKeyExchange(b, 'ecdhe')],
  ['parseAlert', Buffer.from([2, 40]), parseAlert],
  ['parseU16List', vec16(Buffer.from('00170018', 'hex')), parseU16List],
  ['parseVec8Exact', vec8(Buffer.from('abcd', 'hex')), parseVec8Exact],
  ['splitInnerPlaintext', innerPlaintext(23, Buffer.from('data')), splitInnerPlaintext],
];

describe('DTLS parsers under truncation and mutation', () => {
  for (const [name, valid, parse] of parsers) {
    it(`${name} reads the valid sample, and every prefix and 3,000 seeded mutations without throwing`, () => {
      const full = parse(valid);
      assert.ok(full !== undefined && !(Array.isArray(full) && full.length === 0), 'the valid sample parses');
      for (let i = 0; i < valid.length; i++) assert.doesNotThrow(() => parse(valid.subarray(0, i)), `prefix ${i}`);
      const rnd = prng(0xd715 + valid.length);
      for (let i = 0; i < 3000; i++) {
        const m = mutate(valid, rnd);
        assert.doesNotThrow(() => parse(m), `mutation ${m.toString('hex')}`);
      }
    });
  }

  it('parseClientHello refuses duplicate extensions, odd suite lists and trailing bytes', () => {
    const head = Buffer.concat([Buffer.from('fefd', 'hex'), randomBytes(32), vec8(Buffer.alloc(0)), vec8(Buffer.alloc(0))]);
    const make = (suites: string, exts: Buffer) => Buffer.concat([head, vec16(Buffer.from(suites, 'hex')), vec8(Buffer.from([0])), vec16(exts)]);
    const reneg = Buffer.from('ff01000100', 'hex');
    assert.ok(parseClientHello(make('c0a8', reneg)));
    assert.equal(parseClientHello(make('c0a8', Buffer.concat([reneg, reneg]))), undefined, 'duplicate extension');
    assert.equal(parseClientHello(make('c0a800', reneg)), undefined, 'odd suite list');
    assert.equal(parseClientHello(Buffer.concat([make('c0a8', reneg), Buffer.from([0])])), undefined, 'trailing byte');
  });

  it('parseRecords stops at the first malformed record and keeps what came before', () => {
    const one = clientHelloDatagram({ random: randomBytes(32), suites: [0xc0a8] });
    const bad = Buffer.from(one);
    bad.writeUInt16BE(bad.length, 11); // length beyond the datagram
    assert.equal(parseRecords(Buffer.concat([one, bad]), 0).length, 1);
    assert.equal(parseRecords(Buffer.concat([one, one]), 0).length, 2);
  });
});

describe('DTLS record protection, replay window and cookies', () => {
  for (const aead of ['ccm8', 'gcm'] as const) {
    it(`${aead}: opens what it seals, with and without a CID, and refuses any single bit flip`, () => {
      const key = randomBytes(16);
      const iv = randomBytes(4);
      const a = new RecordCipher(aead, key, iv);
      const b = new RecordCipher(aead, key, iv);
      for (const cid of [undefined, randomBytes(8)]) {
        const plain = Buffer.from('a CoAP request');
        const enc = a.seal(cid ? 25 : 23, 0xfefd, 1, 42, cid, plain);
        assert.deepEqual(b.open(cid ? 25 : 23, 0xfefd, 1, 42, cid, enc), plain);
        assert.equal(b.open(cid ? 25 : 23, 0xfefd, 1, 43, cid, enc), undefined, 'the sequence number is authenticated');
        for (let bit = 0; bit < enc.length * 8; bit += 7) {
          const m = Buffer.from(enc);
          m[bit >> 3]! ^= 1 << (bit & 7);
          assert.equal(b.open(cid ? 25 : 23, 0xfefd, 1, 42, cid, m), undefined, `bit ${bit}`);
        }
        if (cid) assert.equal(b.open(25, 0xfefd, 1, 42, randomBytes(8), enc), undefined, 'the CID is authenticated');
      }
    });
  }

  it('accepts each sequence number once and nothing older than 64 below the highest', () => {
    const w = new ReplayWindow();
    const seen = new Set<number>();
    const rnd = prng(64);
    for (let i = 0; i < 20_000; i++) {
      const seq = Math.floor(i / 2 + rnd() * 100);
      const ok = w.check(seq);
      const expect = !seen.has(seq) && !(w.highest - seq >= 64);
      assert.equal(ok, expect, `seq ${seq} (highest ${w.highest})`);
      if (ok) {
        w.update(seq);
        seen.add(seq);
      }
    }
  });

  it('binds cookies to the address, port and hello, and forgets them after two rotations', () => {
    let now = 0;
    const jar = new CookieJar(randomBytes, () => now, 1000);
    const parts = [Buffer.from('hello parameters')];
    const cookie = jar.check(Buffer.alloc(0), '127.0.0.1', 5000, parts) as Buffer;
    assert.ok(Buffer.isBuffer(cookie) && cookie.length === 17);
    assert.equal(jar.check(cookie, '127.0.0.1', 5000, parts), true);
    assert.notEqual(jar.check(cookie, '127.0.0.2', 5000, parts), true);
    assert.notEqual(jar.check(cookie, '127.0.0.1', 5001, parts), true);
    assert.notEqual(jar.check(cookie, '127.0.0.1', 5000, [Buffer.from('other')]), true);
    now = 1500;
    assert.equal(jar.check(cookie, '127.0.0.1', 5000, parts), true, 'valid under the previous secret');
    now = 2600;
    assert.notEqual(jar.check(cookie, '127.0.0.1', 5000, parts), true, 'gone after the next rotation');
  });
});

describe('DTLS transport under mutated datagrams', function () {
  this.timeout(60_000);
  let s: TestServer;
  before(async () => {
    s = await startDtls({ retransmitInitialMs: 60_000 });
  });
  after(async () => {
    await s.close();
  });

  for (const suite of [0xc0a8, 0xc0ae]) {
    it(`never throws and keeps serving after 4,000 mutations of a real ${suite === 0xc0a8 ? 'PSK' : 'ECDHE'} handshake and session`, async () => {
      const sent: Buffer[] = [];
      const c = await DtlsClient.connect({ host: '127.0.0.1', port: s.port, suites: [suite], psk: { identity: PSK_ID, key: PSK }, cid: Buffer.alloc(0), tap: (d) => sent.push(d) });
      await c.request(coapGet('/hello'));
      const from = { address: '127.0.0.1', port: c.localPort, family: 'IPv4' as const };
      const rnd = prng(suite);
      for (let i = 0; i < 4000; i++) {
        const d = mutate(sent[Math.floor(rnd() * sent.length)]!, rnd);
        // From the client's own address (its session), and from strangers.
        s.t.receive(d, i % 2 === 0 ? from : { address: '127.0.0.1', port: 20000 + (i % 500), family: 'IPv4' });
        if (i % 500 === 0) await new Promise((r) => setImmediate(r));
      }
      for (const d of sent) for (let n = 0; n < d.length; n++) s.t.receive(d.subarray(0, n), from);
      assert.equal(s.t.stats().internalErrors, 0);
      const fresh = await DtlsClient.connect({ host: '127.0.0.1', port: s.port, suites: [suite], psk: { identity: PSK_ID, key: PSK } });
      assert.equal(coapReply(await fresh.request(coapGet('/hello'))).code, '2.05');
      fresh.close();
      c.close();
    });
  }
});
