/**
 * Issue 11 F6: one host must not be able to churn the half-open handshake table or keep the server
 * busy with ECDHE flights. The attacker is 127.0.0.1 (many source ports), the genuine device
 * 127.0.0.2 (another loopback address, another source). No test waits on elapsed time: the slow
 * client holds its flight 5 until the attacker has cycled the whole table three times.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:dgram';
import { SourceLimit } from '../../../src/policy/source-limit.ts';
import { HandshakeSlots } from '../../../src/transport/dtls/handshake-slots.ts';
import { sourceOf } from '../../../src/transport/source.ts';
import { DtlsClient } from '../../../tools/dtls-peers/client.ts';
import { PSK, PSK_ID, coapGet, coapReply, halfOpenHandshake, startDtls, until } from '../../support/dtls-server.ts';

const GENUINE = '127.0.0.2';

/** `n` half-open handshakes from 127.0.0.1, `batch` at a time, each from a new port, up to flight 4. */
async function churn(port: number, n: number, socks: Socket[], suites?: number[]): Promise<void> {
  for (let done = 0; done < n; ) {
    const batch = Math.min(10, n - done);
    const hs = await Promise.all(Array.from({ length: batch }, () => halfOpenHandshake(port, suites ? { suites } : {})));
    for (const h of hs) socks.push(h.sock);
    await Promise.all(hs.map((h) => h.flight4));
    done += batch;
  }
}

describe('DTLS handshake limits per source (issue 11 F6)', function () {
  this.timeout(60_000);

  it('lets a slow PSK client finish while one address churns cookie-valid hellos from many ports', async () => {
    const max = 20;
    const s = await startDtls({ maxHandshakes: max });
    const socks: Socket[] = [];
    try {
      await churn(s.port, max, socks); // the table is full of the attacker's handshakes
      let churned = 0;
      const c = await DtlsClient.connect({
        host: '127.0.0.1',
        port: s.port,
        localAddress: GENUINE,
        psk: { identity: PSK_ID, key: PSK },
        retransmitMs: 2_000,
        timeoutMs: 20_000,
        // Flight 4 is in; before flight 5 the attacker replaces the whole table three times.
        beforeFlight5: async () => {
          const before = s.t.stats().handshakesStarted;
          await churn(s.port, 3 * max, socks);
          churned = s.t.stats().handshakesStarted - before;
        },
      });
      try {
        assert.equal(churned, 3 * max);
        const r = coapReply(await c.request(coapGet('/hello')));
        assert.equal(r.payload.toString(), `hi ${PSK_ID}`);
        const st = s.t.stats();
        assert.ok(st.evicted >= 3 * max - 1, `evicted ${st.evicted}`);
        assert.ok(st.handshakes <= max);
      } finally {
        c.close();
      }
    } finally {
      for (const k of socks) k.close();
      await s.close();
    }
  });

  it('caps the half-open handshakes of one address once the table is half full, dropping its own oldest', async () => {
    const s = await startDtls({ maxHandshakes: 10, maxHandshakesPerAddress: 5 });
    const socks: Socket[] = [];
    try {
      await churn(s.port, 12, socks);
      const st = s.t.stats();
      assert.equal(st.handshakes, 5);
      assert.equal(st.evicted, 7);
    } finally {
      for (const k of socks) k.close();
      await s.close();
    }
  });

  it('asks admitHandshake before each new handshake: a refused ECDHE hello costs no flight 4 and no state', async () => {
    const frozen = Date.now();
    const limit = new SourceLimit({ rate: 1, burst: 3 }, 1000);
    const s = await startDtls({ clock: () => frozen, admitHandshake: (src, now) => limit.take(src.address, src.prefix, now).ok });
    const socks: Socket[] = [];
    try {
      const hs = await Promise.all(Array.from({ length: 10 }, () => halfOpenHandshake(s.port, { suites: [0xc0ae] })));
      for (const h of hs) socks.push(h.sock);
      await until(() => s.t.stats().handshakesStarted + s.t.stats().rateLimited === 10, 'all ten hellos handled');
      const st = s.t.stats();
      assert.equal(st.handshakesStarted, 3, 'only the burst got a flight 4');
      assert.equal(st.rateLimited, 7);
      assert.equal(st.handshakes, 3);
      // Another source has its own bucket.
      const c = await DtlsClient.connect({ host: '127.0.0.1', port: s.port, localAddress: GENUINE, suites: [0xc0ae] });
      c.close();
    } finally {
      for (const k of socks) k.close();
      await s.close();
    }
  });

  describe('the fair share table', () => {
    const src = (a: string) => sourceOf(a);

    it('evicts from the source holding the most slots when the table is full', () => {
      const t = new HandshakeSlots<string>(4, 4, 16);
      for (const h of ['a1', 'a2', 'a3']) t.add(h, src('192.0.2.1'));
      t.add('b1', src('192.0.2.2'));
      assert.deepEqual(t.admit(src('192.0.2.3')), { refuse: false, evict: 'a1' });
      assert.deepEqual(t.admit(src('192.0.2.2')), { refuse: false, evict: 'a1' });
    });

    it('never takes the only slot of another source younger than the floor: a newcomer is refused when every source holds one', () => {
      let now = 1_000_000;
      const t = new HandshakeSlots<string>(3, 4, 16, { floorMs: 5_000, clock: () => now });
      t.add('a', src('192.0.2.1'));
      t.add('b', src('192.0.2.2'));
      t.add('c', src('192.0.2.3'));
      now += 4_999;
      assert.deepEqual(t.admit(src('192.0.2.4')), { refuse: true });
      assert.deepEqual(t.admit(src('192.0.2.1')), { refuse: false, evict: 'a' }, 'a source may replace its own');
      t.delete('b');
      assert.deepEqual(t.admit(src('192.0.2.4')), { refuse: false, evict: undefined });
    });

    it('takes the oldest slot of a full table for a newcomer once it is older than the floor, so nobody can keep the table shut', () => {
      let now = 1_000_000;
      const t = new HandshakeSlots<string>(3, 4, 16, { floorMs: 5_000, clock: () => now });
      t.add('a', src('192.0.2.1'));
      now += 1_000;
      t.add('b', src('192.0.2.2'));
      t.add('c', src('2001:db8:5::1'));
      now += 4_000;
      assert.deepEqual(t.admit(src('192.0.2.4')), { refuse: false, evict: 'a' });
      now -= 1;
      assert.deepEqual(t.admit(src('192.0.2.4')), { refuse: true });
    });

    it('counts an IPv6 /64 as one source, and caps it at perPrefix once the table is half full', () => {
      const t = new HandshakeSlots<string>(6, 2, 3);
      t.add('x1', src('2001:db8:1:2::1'));
      t.add('x2', src('2001:db8:1:2::2'));
      t.add('x3', src('2001:db8:1:2:ffff::3'));
      assert.deepEqual(t.admit(src('2001:db8:1:2::99')), { refuse: false, evict: 'x1' });
      assert.deepEqual(t.admit(src('2001:db8:1:3::1')), { refuse: false, evict: undefined }, 'the next /64 is another source');
      assert.equal(t.heldBy(src('2001:db8:1:2::1').address), 1);
    });

    it('reads sources: IPv4-mapped and NAT64 as IPv4, IPv6 by /64 with its zone', () => {
      assert.deepEqual(sourceOf('::ffff:192.0.2.7'), { address: '192.0.2.7' });
      assert.deepEqual(sourceOf('192.0.2.7'), { address: '192.0.2.7' });
      assert.equal(sourceOf('2001:DB8:0:1:2:3:4:5').prefix, '2001:0db8:0000:0001::/64');
      assert.equal(sourceOf('2001:db8::1').prefix, '2001:0db8:0000:0000::/64');
      assert.equal(sourceOf('::1').prefix, '0000:0000:0000:0000::/64');
      assert.equal(sourceOf('fe80::1%eth0').prefix, 'fe80:0000:0000:0000::/64%eth0');
      assert.deepEqual(sourceOf('64:ff9b::192.0.2.1'), { address: '192.0.2.1' }, 'NAT64 (SIIT): the IPv4 client it carries');
      assert.equal(sourceOf('not:an:address:::').prefix, undefined);
    });
  });
});
