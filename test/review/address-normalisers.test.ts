/**
 * Review: two normalisers read source addresses — src/policy/address.ts for the provisioning service
 * (nonce binding, signature and junk budgets) and src/transport/source.ts for the CoAP GET limit and
 * the DTLS handshake table and rate. They disagree on NAT64: address.ts counts a `64:ff9b::/96` peer
 * as the IPv4 address it carries (every IPv4 client of a server behind NAT64/SIIT is its own source),
 * source.ts lumps all of them into one /64, so on such a deployment one IPv4 client can spend the GET
 * budget, the handshake rate and the fair share of the half-open table of every IPv4 client.
 */
import assert from 'node:assert/strict';
import { addressScope } from '../../src/policy/address.ts';
import { sourceOf } from '../../src/transport/source.ts';

const CASES = ['192.0.2.7', '::ffff:192.0.2.7', '64:ff9b::192.0.2.7', '64:ff9b::c000:207', '2001:db8:0:1::5', 'fe80::1%eth0', '::1'];

describe('the two source-address normalisers (review)', () => {
  for (const a of CASES) {
    it(`agree on the address and the /64 of ${a}`, () => {
      const s = addressScope(a);
      const t = sourceOf(a);
      assert.equal(t.prefix === undefined, s.prefix === undefined, `IPv4 or IPv6: ${JSON.stringify({ service: s, transport: t })}`);
      if (s.prefix === undefined) assert.equal(t.address, s.address, 'the IPv4 address');
    });
  }
});
