/**
 * Issue 11 review, findings 4 and 8 (src/transport/dtls/handshake-slots.ts). Before the fix a full
 * half-open table in
 * which every source holds one slot refuses every newcomer. A source is an IPv4 address or an IPv6
 * /64, and anyone can hold 65,536 /64s (a /48 from a free tunnel broker), so one host that keeps
 * `dtlsMaxHandshakes` (1,000) cookie-valid ClientHellos open from 1,000 /64s of its /48 — about 17 a
 * second with the 60 s handshake timeout, each well within the per-address handshake rate — locks
 * every genuine DTLS client out of new handshakes. Before the fix the same attacker needed thousands
 * of hellos a second to starve a slow client. Now sources nest (IPv6 /48 → /56 → /64 → address)
 * and the largest /48 pays at a full table; per-source caps apply only once the table is half full.
 */
import assert from 'node:assert/strict';
import { HandshakeSlots } from '../../../src/transport/dtls/handshake-slots.ts';
import { sourceOf } from '../../../src/transport/source.ts';

describe('the half-open handshake table against the /64s of one /48', () => {
  it('admits a genuine newcomer when the /64s of one /48 hold every slot, one each', () => {
    const t = new HandshakeSlots<string>(1000, 32, 128);
    for (let i = 0; i < 1000; i++) t.add(`attacker-${i}`, sourceOf(`2001:db8:42:${i.toString(16)}::1`));
    const a = t.admit(sourceOf('192.0.2.50'));
    assert.equal(a.refuse, false, 'a genuine IPv4 client gets a slot');
    const b = t.admit(sourceOf('2001:db8:77:1::5'));
    assert.equal(b.refuse, false, 'so does a genuine IPv6 client of another /48');
  });
});

describe('the half-open handshake table and a site behind one NAT address', () => {
  it('lets a 33rd device behind one IPv4 address start its handshake without dropping the first, while the table is nearly empty', () => {
    // dtlsMaxHandshakes 1000, dtlsMaxHandshakesPerAddress 32 (the defaults). Before this fix a site
    // of slow devices behind one address (CGNAT, a factory NAT after a power cut) evicted its own
    // oldest — the one closest to finishing — as soon as 33 were in flight, whatever room the table
    // had; now the per-address cap applies only once the table is half full.
    const t = new HandshakeSlots<string>(1000, 32, 128);
    for (let i = 0; i < 32; i++) t.add(`device-${i}`, sourceOf('198.51.100.1'));
    assert.deepEqual(t.admit(sourceOf('198.51.100.1')), { refuse: false, evict: undefined });
  });
});

describe('the half-open handshake table under pressure', () => {
  it('takes a slot for a newcomer from the largest /56 of the largest /48, not from a /48 holding one', () => {
    const t = new HandshakeSlots<string>(6, 32, 128);
    t.add('other-48', sourceOf('2001:db8:99:1::1'));
    t.add('a-56-first', sourceOf('2001:db8:42:100::1'));
    t.add('b-56-1', sourceOf('2001:db8:42:200::1'));
    t.add('b-56-2', sourceOf('2001:db8:42:201::1'));
    t.add('b-56-3', sourceOf('2001:db8:42:2ff::1'));
    t.add('v4', sourceOf('192.0.2.9'));
    assert.deepEqual(t.admit(sourceOf('198.51.100.7')), { refuse: false, evict: 'b-56-1' });
  });

  it('still caps one address at perAddress once the table is half full', () => {
    const t = new HandshakeSlots<string>(64, 32, 128);
    for (let i = 0; i < 32; i++) t.add(`device-${i}`, sourceOf('198.51.100.1'));
    assert.deepEqual(t.admit(sourceOf('198.51.100.1')), { refuse: false, evict: 'device-0' });
  });
});

describe('the /56 and /48 of a source', () => {
  it('reads them from the address, keeps the zone, and has none for IPv4', () => {
    const s = sourceOf('2001:db8:42:3e7::1');
    assert.deepEqual([s.prefix48, s.prefix56], ['2001:0db8:0042::/48', '2001:0db8:0042:0300::/56']);
    const l = sourceOf('fe80::1%eth0');
    assert.deepEqual([l.prefix48, l.prefix56], ['fe80:0000:0000::/48%eth0', 'fe80:0000:0000:0000::/56%eth0']);
    const v4 = sourceOf('192.0.2.1');
    assert.deepEqual([v4.prefix48, v4.prefix56], [undefined, undefined]);
  });
});
