/**
 * Review of the issue #11 F6 fix (src/transport/dtls/handshake-slots.ts): a full half-open table in
 * which every source holds one slot refuses every newcomer. A source is an IPv4 address or an IPv6
 * /64, and anyone can hold 65,536 /64s (a /48 from a free tunnel broker), so one host that keeps
 * `dtlsMaxHandshakes` (1,000) cookie-valid ClientHellos open from 1,000 /64s of its /48 — about 17 a
 * second with the 60 s handshake timeout, each well within the per-address handshake rate — locks
 * every genuine DTLS client out of new handshakes. Before the fix the same attacker needed thousands
 * of hellos a second to starve a slow client.
 */
import assert from 'node:assert/strict';
import { HandshakeSlots } from '../../src/transport/dtls/handshake-slots.ts';
import { sourceOf } from '../../src/transport/source.ts';

describe('the half-open handshake table against one /48 (review of F6)', () => {
  it('admits a genuine newcomer when the /64s of one /48 hold every slot, one each', () => {
    const t = new HandshakeSlots<string>(1000, 32, 128);
    for (let i = 0; i < 1000; i++) t.add(`attacker-${i}`, sourceOf(`2001:db8:42:${i.toString(16)}::1`));
    const a = t.admit(sourceOf('192.0.2.50'));
    assert.equal(a.refuse, false, 'a genuine IPv4 client gets a slot');
    const b = t.admit(sourceOf('2001:db8:77:1::5'));
    assert.equal(b.refuse, false, 'so does a genuine IPv6 client of another /48');
  });
});

describe('the half-open handshake table and a site behind one NAT address (review of F6)', () => {
  it('lets a 33rd device behind one IPv4 address start its handshake without dropping the first, while the table is nearly empty', () => {
    // dtlsMaxHandshakes 1000, dtlsMaxHandshakesPerAddress 32 (the defaults). Before the fix the
    // oldest half-open handshake was dropped only when the whole table was full; now a site of slow
    // devices behind one address (CGNAT, a factory NAT after a power cut) evicts its own oldest —
    // the one closest to finishing — as soon as 33 are in flight, whatever room the table has.
    const t = new HandshakeSlots<string>(1000, 32, 128);
    for (let i = 0; i < 32; i++) t.add(`device-${i}`, sourceOf('198.51.100.1'));
    assert.deepEqual(t.admit(sourceOf('198.51.100.1')), { refuse: false, evict: undefined });
  });
});
