import assert from 'node:assert/strict';
import { peerKey } from '../../src/transport/datagram.ts';

describe('peer keys (sources in logs, records and per-address limits)', () => {
  it('writes IPv4, IPv6 in brackets, and an IPv4-mapped IPv6 address as plain IPv4', () => {
    assert.equal(peerKey({ address: '192.0.2.7', port: 5683, family: 'IPv4' }), '192.0.2.7:5683');
    assert.equal(peerKey({ address: '2001:db8::1', port: 40000, family: 'IPv6' }), '[2001:db8::1]:40000');
    assert.equal(peerKey({ address: '::ffff:127.0.0.1', port: 39396, family: 'IPv6' }), '127.0.0.1:39396');
    assert.equal(peerKey({ address: '::FFFF:10.0.0.1', port: 1, family: 'IPv6' }), '10.0.0.1:1');
    assert.equal(peerKey({ address: '::ffff:abcd', port: 1, family: 'IPv6' }), '[::ffff:abcd]:1');
  });
});
