/**
 * The many-ids tracker with more sources than it has slots (issue 11 F14). It used to drop the least
 * recently active address for each new one, so 300 addresses taking turns with 100 slots were each
 * forgotten before their next ID and 40,000 fake IDs raised nothing; and every IPv6 address counted
 * apart, so one host's /64 was an endless supply of fresh sources.
 */
import assert from 'node:assert/strict';
import { AddressTracker, type ManyIds } from '../../../src/policy/monitor/id-tracker.ts';
import { manyIdsNote } from '../../../src/policy/monitor/flag-rules.ts';
import { monitorSource } from '../../../src/policy/monitor/tracked-source.ts';

const T0 = 1_800_000_000;
const DEFAULTS = { threshold: 50, windowS: 60 };

describe('the many-ids tracker with more sources than slots', () => {
  it('raises many-ids for 40,000 fake IDs from 300 addresses taking turns, with 100 slots', () => {
    const t = new AddressTracker({ ...DEFAULTS, maxAddresses: 100 });
    const flagged = new Set<string>();
    for (let i = 0; i < 40_000; i++) {
      const m = t.observe(`198.51.${(i % 300) >> 8}.${(i % 300) & 0xff}`, `fake-${i}`, T0 + Math.floor(i / 1000));
      if (m) flagged.add(m.address);
    }
    assert.ok(flagged.size > 0, 'no address was flagged');
    assert.ok(t.size <= 100, `sources tracked ${t.size}`);
    assert.ok(t.entries <= 100 * 50, `IDs tracked ${t.entries}`);
  });

  it('keeps a source that sends many IDs when a flood of one-shot addresses arrives', () => {
    const t = new AddressTracker({ ...DEFAULTS, maxAddresses: 100 });
    for (let i = 0; i < 49; i++) assert.equal(t.observe('203.0.113.7', `scan-${i}`, T0), undefined);
    for (let i = 0; i < 10_000; i++) t.observe(`10.${i >> 16}.${(i >> 8) & 0xff}.${i & 0xff}`, `one-${i}`, T0 + 1);
    const m = t.observe('203.0.113.7', 'scan-49', T0 + 2);
    assert.equal(m?.distinct, 50);
    assert.equal(m?.address, '203.0.113.7');
    assert.equal(m?.estimated, undefined, 'still counted exactly: it was never dropped');
  });

  it('catches an address that sends just under the threshold, moves on and comes back within the window', () => {
    const t = new AddressTracker({ ...DEFAULTS, maxAddresses: 100 });
    const flagged: ManyIds[] = [];
    let id = 0;
    // 200 addresses in two rounds of 40 IDs each: 80 per address in the window, never 50 in one stretch.
    for (let round = 0; round < 2; round++) {
      for (let a = 0; a < 200; a++) {
        for (let k = 0; k < 40; k++) {
          const m = t.observe(`192.0.2.${a}`, `id-${id++}`, T0 + round * 20);
          if (m) flagged.push(m);
        }
      }
    }
    assert.ok(flagged.length > 0, 'no address was flagged');
    assert.ok(flagged.every((m) => m.estimated === true), 'counted across a drop, so an estimate');
    assert.equal(manyIdsNote(flagged[0]!, 'x', 60).evidence['estimated'], 'yes');
  });

  it('does not count a dropped gateway\'s polling devices again when it comes back', () => {
    // 300 gateways with 10 devices each, every device polling every 30 s for 5 minutes; 100 slots.
    const t = new AddressTracker({ ...DEFAULTS, maxAddresses: 100 });
    for (let s = 0; s < 300; s++) {
      for (let g = 0; g < 300; g++) {
        for (let d = 0; d < 10; d++) {
          if ((g * 10 + d) % 30 !== s % 30) continue;
          const m = t.observe(`100.64.${g >> 8}.${g & 0xff}`, `gw${g}-dev${d}`, T0 + s);
          assert.equal(m, undefined, `gateway ${g} flagged at ${s} s`);
        }
      }
    }
    assert.ok(t.evicted > 0, 'the table overflowed');
  });

  it('counts IPv6 addresses within one /64 as one source', () => {
    const t = new AddressTracker({ ...DEFAULTS, maxAddresses: 100 });
    let m: ManyIds | undefined;
    for (let i = 0; i < 50; i++) m = t.observe(`2001:db8:0:1:${((i * 7919) & 0xffff).toString(16)}:${i.toString(16)}::${(i + 1).toString(16)}`, `v6-${i}`, T0);
    assert.equal(m?.address, '2001:0db8:0000:0001::/64');
    assert.equal(m?.distinct, 50);
    assert.equal(t.size, 1);
  });

  it('keeps different /64s and IPv4 addresses apart', () => {
    const t = new AddressTracker({ ...DEFAULTS, threshold: 3, maxAddresses: 100 });
    for (const a of ['2001:db8:0:1::1', '2001:db8:0:2::1', '2001:db8:1:1::1', '192.0.2.1', '192.0.2.2']) assert.equal(t.observe(a, `id-${a}`, T0), undefined);
    assert.equal(t.size, 5);
  });
});

describe('monitorSource', () => {
  it('keeps IPv4 addresses as they are', () => {
    assert.equal(monitorSource('192.0.2.1'), '192.0.2.1');
    assert.equal(monitorSource('10.0.0.255'), '10.0.0.255');
  });

  it('counts an IPv6 address by its /64, whatever its spelling', () => {
    for (const a of ['2001:db8:0:1::1', '2001:0DB8:0000:0001:ffff:ffff:ffff:ffff', '2001:db8::1:0:0:0:1', '2001:db8:0:1:1:2:3:4%eth0', '2001:db8:0:1::192.0.2.1']) {
      assert.equal(monitorSource(a), '2001:0db8:0000:0001::/64', a);
    }
    assert.equal(monitorSource('::1'), '0000:0000:0000:0000::/64');
    assert.equal(monitorSource('fe80::1%lo'), 'fe80:0000:0000:0000::/64');
  });

  it('reads an IPv4-mapped IPv6 address as the IPv4 address', () => {
    assert.equal(monitorSource('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(monitorSource('::ffff:c000:201'), '192.0.2.1');
  });

  it('returns anything else unchanged', () => {
    for (const a of ['', 'local', '1.2.3', '256.1.1.1', '1:2:3:4:5:6:7:8:9', '1::2::3', 'g::1']) assert.equal(monitorSource(a), a, a);
  });
});
