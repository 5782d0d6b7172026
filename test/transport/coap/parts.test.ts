import assert from 'node:assert/strict';
import { DedupCache } from '../../../src/transport/coap/dedup.ts';
import { MAX_PEER_IDS, PeerIds } from '../../../src/transport/coap/peer-ids.ts';
import { peerKey, type Peer } from '../../../src/transport/datagram.ts';
import { BlockCache, blockSize, decodeBlock, encodeBlock, szxOf, type CachedRepresentation } from '../../../src/transport/coap/block-cache.ts';
import { linkFormat, linkValue, matches, parseFilters } from '../../../src/transport/coap/link-format.ts';
import { createMemoryPair } from '../../support/memory-transport.ts';
import { prng } from '../../support/coap-engine.ts';
import { NO_PREALLOCATION_BYTES, retainedGrowth } from '../../support/heap-growth.ts';

const buf = (s: string) => Buffer.from(s);

describe('CoAP engine parts', () => {
  describe('DedupCache', () => {
    it('returns what was stored until it expires', () => {
      const c = new DedupCache({ maxEntries: 10, perPeer: 5 });
      c.set('p', 1, buf('r1'), 100, 0);
      assert.deepEqual(c.get('p', 1, 99)?.response, buf('r1'));
      assert.equal(c.get('p', 1, 100), undefined);
      assert.equal(c.size, 0);
      assert.equal(c.peerCount, 0);
    });

    it('keeps a pooled response in an allocation of its own, so that it does not pin a shared 8 KiB slab', () => {
      const c = new DedupCache({ maxEntries: 10, perPeer: 5 });
      const pooled = Buffer.allocUnsafe(40).fill(7); // what MessageWriter.finish() returns: a view into Node's pool
      assert.ok(pooled.buffer.byteLength > pooled.byteLength, 'precondition: a small allocUnsafe is a pool view');
      c.set('p', 1, pooled, 100, 0);
      const kept = c.get('p', 1, 0)!.response!;
      assert.deepEqual(kept, pooled);
      assert.equal(kept.byteOffset, 0);
      assert.equal(kept.buffer.byteLength, kept.byteLength);
      // One that already owns its memory is kept as it is.
      const own = Buffer.allocUnsafeSlow(40).fill(8);
      c.set('p', 2, own, 100, 0);
      assert.equal(c.get('p', 2, 0)!.response, own);
    });

    it('remembers silence as a null response', () => {
      const c = new DedupCache({ maxEntries: 10, perPeer: 5 });
      c.set('p', 1, null, 100, 0);
      assert.equal(c.get('p', 1, 1)?.response, null);
    });

    it('evicts a peer’s oldest entry at the per-peer cap without touching other peers', () => {
      const c = new DedupCache({ maxEntries: 100, perPeer: 2 });
      c.set('a', 1, buf('1'), 1e9, 0);
      c.set('b', 1, buf('1'), 1e9, 0);
      c.set('a', 2, buf('2'), 1e9, 0);
      c.set('a', 3, buf('3'), 1e9, 0);
      assert.equal(c.get('a', 1, 0), undefined);
      assert.ok(c.get('a', 2, 0));
      assert.ok(c.get('b', 1, 0));
      assert.equal(c.size, 3);
    });

    it('evicts the globally oldest entry at the total cap', () => {
      const c = new DedupCache({ maxEntries: 3, perPeer: 10 });
      for (const p of ['a', 'b', 'c', 'd']) c.set(p, 1, buf(p), 1e9, 0);
      assert.equal(c.get('a', 1, 0), undefined);
      assert.equal(c.size, 3);
      assert.equal(c.peerCount, 3);
    });

    it('replaces an entry stored again under the same key', () => {
      const c = new DedupCache({ maxEntries: 3, perPeer: 3 });
      c.set('a', 1, buf('old'), 1e9, 0);
      c.set('a', 1, buf('new'), 1e9, 0);
      assert.deepEqual(c.get('a', 1, 0)?.response, buf('new'));
      assert.equal(c.size, 1);
    });

    it('stays consistent with a model under random operations', () => {
      const rnd = prng(4711);
      const c = new DedupCache({ maxEntries: 50, perPeer: 4 });
      const last = new Map<string, { response: string; expires: number }>();
      let evictedEarly = 0;
      let now = 0;
      for (let i = 0; i < 50_000; i++) {
        now += Math.floor(rnd() * 3);
        const peer = `p${Math.floor(rnd() * 30)}`;
        const mid = Math.floor(rnd() * 8);
        if (rnd() < 0.6) {
          const expires = now + 20 + Math.floor(rnd() * 200);
          c.set(peer, mid, buf(String(i)), expires, now);
          last.set(`${peer}#${mid}`, { response: String(i), expires });
        } else {
          // Whatever is returned is what was stored last for this peer and Message ID, unexpired
          // (entries are reused: a reused one must never answer for its former key).
          const got = c.get(peer, mid, now);
          const want = last.get(`${peer}#${mid}`);
          if (got !== undefined) {
            assert.equal(got.response?.toString(), want?.response);
            assert.ok(got.expires > now && got.expires === want?.expires);
          } else if (want !== undefined && want.expires > now) evictedEarly++;
        }
        assert.ok(c.size <= 50);
        assert.ok(c.peerCount <= c.size);
      }
      assert.ok(evictedEarly > 0, 'the caps evicted live entries (so removed entries were reused)');
    });
  });

  describe('PeerIds', () => {
    const v4 = (port: number, address = '192.0.2.7'): Peer => ({ address, port, family: 'IPv4' });

    it('keys a peer by endpoint tag and address, as peerKey writes it, or by its session', () => {
      const ids = new PeerIds('3/');
      for (const p of [v4(5683), { address: '2001:db8::1', port: 5683, family: 'IPv6' } as Peer, { address: '::ffff:192.0.2.7', port: 9, family: 'IPv6' } as Peer]) {
        assert.equal(ids.of(p), '3/' + peerKey(p));
        assert.equal(ids.of({ ...p }), '3/' + peerKey(p), 'a second datagram from the peer');
      }
      assert.equal(ids.of({ ...v4(5683), sessionKey: 's1' }), '3/~s1');
      assert.notEqual(ids.of(v4(5684)), ids.of(v4(5683)));
      assert.notEqual(ids.of(v4(5683, '192.0.2.8')), ids.of(v4(5683)));
    });

    it('keeps at most MAX_PEER_IDS keys, still right after it starts over', () => {
      const ids = new PeerIds('0/');
      for (let i = 0; i < MAX_PEER_IDS * 2 + 5; i++) {
        const p = v4(i & 0xffff, `10.0.${i >> 16}.1`);
        assert.equal(ids.of(p), '0/' + peerKey(p));
        assert.ok(ids.size <= MAX_PEER_IDS);
      }
      assert.equal(ids.of(v4(1, '10.0.0.1')), '0/10.0.0.1:1');
    });
  });

  describe('BlockCache', () => {
    const rep = (n: number): CachedRepresentation => ({
      code: 69,
      contentFormat: undefined,
      maxAge: undefined,
      etag: undefined,
      handlerEtag: false,
      payload: Buffer.alloc(n),
      options: undefined,
    });

    it('bounds entries and bytes, evicting the oldest', () => {
      const c = new BlockCache({ maxEntries: 3, maxBytes: 1000, lifetimeMs: 1e9 });
      c.set('a', rep(400), 0);
      c.set('b', rep(400), 0);
      c.set('c', rep(400), 0);
      assert.equal(c.get('a', 0), undefined);
      assert.ok(c.byteCount <= 1000);
      c.set('d', rep(10), 0);
      c.set('e', rep(10), 0);
      assert.equal(c.size, 3);
    });

    it('bounds entries without allocating for all of them up front', async () => {
      const { bytes, made } = await retainedGrowth(() => new BlockCache({ maxEntries: 1_000_000, maxBytes: 1 << 30, lifetimeMs: 1e9 }));
      assert.ok(bytes < NO_PREALLOCATION_BYTES, `grew by ${bytes} bytes`);
      made.set('a', rep(1), 0);
      assert.equal(made.size, 1);
    });

    it('keeps the entry bound when a key is replaced', () => {
      const c = new BlockCache({ maxEntries: 2, maxBytes: 1000, lifetimeMs: 1e9 });
      c.set('a', rep(1), 0);
      c.set('b', rep(1), 0);
      c.set('b', rep(2), 0); // a replacement evicts nothing
      assert.ok(c.get('a', 0));
      c.set('c', rep(1), 0); // a new key evicts the oldest
      assert.equal(c.get('a', 0), undefined);
      assert.equal(c.size, 2);
    });

    it('does not cache a representation larger than its byte budget', () => {
      const c = new BlockCache({ maxEntries: 3, maxBytes: 100, lifetimeMs: 1e9 });
      c.set('a', rep(101), 0);
      assert.equal(c.size, 0);
    });

    it('expires entries lazily', () => {
      const c = new BlockCache({ maxEntries: 3, maxBytes: 1000, lifetimeMs: 10 });
      c.set('a', rep(1), 0);
      assert.ok(c.get('a', 9));
      assert.equal(c.get('a', 10), undefined);
      assert.equal(c.byteCount, 0);
    });

    it('drops expired entries before it inserts, so they hold no room', () => {
      const c = new BlockCache({ maxEntries: 3, maxBytes: 1000, lifetimeMs: 10 });
      c.set('a', rep(100), 0);
      c.set('b', rep(100), 5);
      c.set('c', rep(100), 12); // a expired at 10: gone; b lives until 15
      assert.equal(c.size, 2);
      assert.equal(c.byteCount, 200);
      assert.ok(c.get('b', 12));
      c.set('d', rep(100), 30); // b and c expired: both gone
      assert.equal(c.size, 1);
      assert.equal(c.byteCount, 100);
      assert.ok(c.get('d', 30));
    });

    it('encodes and decodes Block option values (RFC 7959 §2.2)', () => {
      assert.equal(encodeBlock(2, false, 6), 0x26);
      assert.deepEqual(decodeBlock(0x1e), { num: 1, more: true, szx: 6 });
      assert.equal(blockSize(0), 16);
      assert.equal(blockSize(6), 1024);
      assert.equal(szxOf(64), 2);
      assert.throws(() => szxOf(2048), RangeError);
      assert.throws(() => szxOf(100), RangeError);
    });
  });

  describe('link format (RFC 6690)', () => {
    const links = [
      { path: '/idprov/request', rt: 'idprov.request', ct: 60 },
      { path: '/sensors/temp', rt: 'temperature-c core.s', title: 'Temp "inside"' },
      { path: '/plain' },
    ];

    it('serialises rt and title as quoted strings with escapes, ct as a number', () => {
      assert.equal(linkValue(links[0]!), '</idprov/request>;rt="idprov.request";ct=60');
      assert.equal(linkValue(links[1]!), '</sensors/temp>;rt="temperature-c core.s";title="Temp \\"inside\\""');
      assert.equal(linkValue(links[2]!), '</plain>');
    });

    it('matches any of several space-separated rt values', () => {
      assert.ok(matches(links[1]!, parseFilters(['rt=core.s'])));
      assert.ok(matches(links[1]!, parseFilters(['rt=temp*'])));
      assert.ok(!matches(links[1]!, parseFilters(['rt=core'])));
    });

    it('does not match a filter on an attribute the link lacks, or an unknown attribute', () => {
      assert.ok(!matches(links[2]!, parseFilters(['rt=*'])));
      assert.ok(!matches(links[0]!, parseFilters(['sz=10'])));
    });

    it('requires every filter to match', () => {
      assert.equal(linkFormat(links, parseFilters(['rt=idprov*', 'ct=60'])), '</idprov/request>;rt="idprov.request";ct=60');
      assert.equal(linkFormat(links, parseFilters(['rt=idprov*', 'ct=61'])), '');
    });
  });

  describe('in-memory transport pair', () => {
    it('delivers datagrams asynchronously with the sender’s address', async () => {
      const [a, b] = createMemoryPair();
      const got: [string, number][] = [];
      b.onMessage((d, p) => got.push([d.toString(), p.port]));
      a.send(buf('x'), b.peer);
      assert.equal(got.length, 0);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(got, [['x', a.peer.port]]);
    });

    it('loses and duplicates datagrams through its fault hooks', async () => {
      const [a, b] = createMemoryPair();
      const got: string[] = [];
      b.onMessage((d) => got.push(d.toString()));
      a.faults.drop = (d) => d.toString() === 'lost';
      a.faults.duplicate = (d) => d.toString() === 'twice';
      for (const s of ['lost', 'twice', 'once']) a.send(buf(s), b.peer);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(got, ['twice', 'twice', 'once']);
    });

    it('counts datagrams to unknown peers as unroutable and stops after close', async () => {
      const [a, b] = createMemoryPair();
      let n = 0;
      b.onMessage(() => n++);
      a.send(buf('x'), { address: '127.0.0.9', port: 1, family: 'IPv4' });
      assert.equal(a.unroutable, 1);
      await b.close();
      a.send(buf('x'), b.peer);
      await new Promise((r) => setImmediate(r));
      assert.equal(n, 0);
    });
  });
});
