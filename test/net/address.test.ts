/**
 * Source addresses as the limits and the nonce binding see them (issue #11, F4): IPv4 per address,
 * IPv6 per address and per /64 (and its /56 and /48), IPv4-mapped and NAT64 addresses as the IPv4
 * address they carry; one normaliser for the service and the transports (review finding 7).
 */
import assert from 'node:assert/strict';
import { addressScope, scopeKeys } from '../../src/net/address.ts';
import { sourceOf } from '../../src/transport/source.ts';

describe('address scopes of the rate limits', () => {
  it('counts an IPv4 peer per address, whatever its port', () => {
    assert.deepEqual(addressScope('10.0.0.7:5683'), { address: '10.0.0.7' });
    assert.deepEqual(addressScope('10.0.0.7:1'), { address: '10.0.0.7' });
    assert.deepEqual(addressScope('10.0.0.7'), { address: '10.0.0.7' });
  });

  it('counts an IPv6 peer per canonical address and per /64', () => {
    const a = addressScope('[2001:DB8:1:2::7]:5683');
    assert.deepEqual(a, {
      address: '2001:0db8:0001:0002:0000:0000:0000:0007',
      prefix: '2001:0db8:0001:0002::/64',
      prefix56: '2001:0db8:0001:0000::/56',
      prefix48: '2001:0db8:0001::/48',
    });
    assert.deepEqual(addressScope('[2001:db8:1:2:0:0:0:7]:1'), a, 'the same address written out');
    assert.equal(addressScope('[2001:db8:1:2:aaaa::1]:1').prefix, a.prefix, 'another host of the /64');
    assert.notEqual(addressScope('[2001:db8:1:3::7]:1').prefix, a.prefix);
    assert.deepEqual(scopeKeys(a), [a.address, a.prefix]);
    assert.equal(addressScope('[::1]:9').address, '0000:0000:0000:0000:0000:0000:0000:0001');
  });

  it('counts IPv4-mapped and NAT64 addresses as the IPv4 address they carry', () => {
    assert.deepEqual(addressScope('[::ffff:10.0.0.7]:5683'), { address: '10.0.0.7' });
    assert.deepEqual(addressScope('[::ffff:a00:7]:5683'), { address: '10.0.0.7' });
    assert.deepEqual(addressScope('[64:ff9b::10.0.0.7]:5683'), { address: '10.0.0.7' });
  });

  it('names the /56 and the /48 of an IPv6 peer, so budgets can grow by allocation', () => {
    const a = addressScope('[2001:db8:1:2ab::7]:1');
    assert.equal(a.prefix56, '2001:0db8:0001:0200::/56');
    assert.equal(a.prefix48, '2001:0db8:0001::/48');
    assert.equal(addressScope('[2001:db8:1:2ff::1]:1').prefix56, a.prefix56, 'another /64 of the /56');
    assert.notEqual(addressScope('[2001:db8:1:3ab::1]:1').prefix56, a.prefix56, 'the next /56');
    assert.equal(addressScope('[2001:db8:1:ffff::1]:1').prefix48, a.prefix48, 'another /56 of the /48');
    assert.equal(addressScope('10.0.0.7:1').prefix56, undefined);
    assert.equal(addressScope('10.0.0.7:1').prefix48, undefined);
    assert.equal(addressScope('[fe80::1%eth0]:1').prefix48, 'fe80:0000:0000::/48%eth0');
  });

  it('is the one normaliser the transports use too: sourceOf reads node:dgram addresses the same way', () => {
    for (const a of ['192.0.2.7', '::ffff:192.0.2.7', '64:ff9b::192.0.2.7', '64:ff9b::c000:207', '2001:db8:0:1::5', 'fe80::1%eth0', '::1']) {
      assert.deepEqual(sourceOf(a), addressScope(a), a);
    }
    assert.deepEqual(sourceOf('64:ff9b::c000:207'), { address: '192.0.2.7' }, 'NAT64 carries an IPv4 client');
  });

  it('keeps the zone of a link-local address in both keys', () => {
    const s = addressScope('[fe80::1%eth0]:5683');
    assert.equal(s.address, 'fe80:0000:0000:0000:0000:0000:0000:0001%eth0');
    assert.equal(s.prefix, 'fe80:0000:0000:0000::/64%eth0');
    assert.notEqual(addressScope('[fe80::1%eth1]:5683').prefix, s.prefix);
  });

  it('takes text that is no IP address as its own scope', () => {
    for (const t of ['peer-a:1', 'mem', '[zz::1]:1', '1.2.3.256:1', '1::2::3', '[1:2:3:4:5:6:7:8:9]:1']) {
      const s = addressScope(t);
      assert.equal(s.prefix, undefined, t);
      assert.ok(s.address.length > 0, t);
    }
  });
});
