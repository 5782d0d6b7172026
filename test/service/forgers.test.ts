/**
 * Forgers and spoofers against the provisioning service (issue #11, F1, F3, F4; docs/security.md):
 * anyone can sign a request with a key of their own for any device ID, and anyone can send datagrams
 * with a victim's source address. Neither may spend a budget, or a place in the used-once set, that a
 * genuine device needs. Service level with a fake clock: no sleeps, no timing thresholds.
 */
import assert from 'node:assert/strict';
import { ERROR_TABLE } from '../../src/errors.ts';
import { encodeResponse } from '../../src/protocol/messages.ts';
import { TestDevice } from '../support/device.ts';
import { allow, ask, codeOf, maxAgeOf, peer, refresh, rig, show, type Rig } from '../support/service-rig.ts';

const ERR_RATE = ERROR_TABLE['rate-limited'].err!;
const ERR_NONCE = ERROR_TABLE.nonce.err!;
const ERR_SIG = ERROR_TABLE['bad-signature'].err!;

const GENUINE = '192.0.2.10:5683';
const FORGER = '203.0.113.66:40000';

describe('a forger signing with its own key in a device ID\'s name (F1)', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await rig();
  });
  afterEach(async () => {
    await r.close();
  });

  /** The forger's burst, then two signed requests a second, for `seconds`; `each` runs every second. */
  async function forge(forger: TestDevice, seconds: number, each: (s: number) => Promise<void>): Promise<Set<string>> {
    const codes = new Set<string>();
    for (let i = 0; i < 12; i++) codes.add(codeOf(await ask(r, forger, FORGER)));
    for (let s = 1; s <= seconds; s++) {
      r.tick(1);
      for (let i = 0; i < 2; i++) codes.add(codeOf(await ask(r, forger, FORGER)));
      await each(s);
    }
    return codes;
  }

  it('keeps a genuine device provisioning and refreshing while a forger sends two signed requests a second in its name', async () => {
    const dev = new TestDevice('victim-1');
    await allow(r, dev);
    const first = await ask(r, dev, GENUINE);
    assert.equal(codeOf(first), '2.01', show(first));
    let token = first.body.token!;
    const forger = new TestDevice(dev.id);
    const codes = await forge(forger, 60, async (s) => {
      if (s % 5 !== 0) return;
      const out = s % 10 === 0 ? await ask(r, dev, GENUINE) : await refresh(r, dev, token, GENUINE);
      assert.equal(codeOf(out), '2.01', `second ${s}: ${show(out)}`);
      token = out.body.token!;
    });
    assert.ok(codes.has('4.03') && [...codes].every((c) => c === '4.03' || c === '4.29'), `the forger is refused (key-mismatch), and rate-limited on its own budget: ${[...codes]}`);
  });

  it('spends the forger\'s own budget: its requests past its burst get 4.29, the device\'s still succeed', async () => {
    const dev = new TestDevice('victim-2');
    await allow(r, dev);
    assert.equal(codeOf(await ask(r, dev, GENUINE)), '2.01');
    const forger = new TestDevice(dev.id);
    const codes: string[] = [];
    for (let i = 0; i < 15; i++) codes.push(codeOf(await ask(r, forger, FORGER)));
    assert.deepEqual(codes.slice(0, 10), new Array(10).fill('4.03'), 'the burst of the forger\'s claim');
    assert.deepEqual(codes.slice(10), new Array(5).fill('4.29'), 'then its own claim is empty');
    const out = await ask(r, dev, GENUINE);
    assert.equal(codeOf(out), '2.01', show(out));
  });

  it('keeps the first key of an unknown ID polling while a forger claims the ID with another key', async () => {
    const dev = new TestDevice('unknown-victim');
    let out = await ask(r, dev, GENUINE);
    assert.equal(codeOf(out), '2.05', show(out));
    const forger = new TestDevice(dev.id);
    await forge(forger, 30, async (s) => {
      if (s % 3 !== 0) return;
      out = await r.svc.request(dev.request({ nonce: out.body.nonce! }), { source: peer(GENUINE) });
      assert.equal(codeOf(out), '2.05', `second ${s}: ${show(out)}`);
    });
  });

  it('gives the holders of an entry\'s OOB secret one budget for the ID, however many keys they sign with', async () => {
    const mac = Buffer.from('020000000c01', 'hex');
    const dev = new TestDevice('secret-only');
    await allow(r, dev, { pk: undefined, mac, secret: 'label-code-7Q4K-z' });
    const codes: string[] = [];
    // The secret proven, a wrong MAC: refused (4.03), on the ID's budget whatever the key.
    for (let i = 0; i < 12; i++) codes.push(codeOf(await ask(r, new TestDevice(dev.id), FORGER, { secret: 'label-code-7Q4K-z', mac: Buffer.from('020000000c02', 'hex') })));
    assert.deepEqual(codes, [...new Array(10).fill('4.03'), '4.29', '4.29']);
  });

  it('spends nothing of a device\'s budget for a refresh with its token signed by another key', async () => {
    const dev = new TestDevice('victim-3');
    await allow(r, dev);
    const token = (await ask(r, dev, GENUINE)).body.token!;
    const thief = new TestDevice(dev.id);
    for (let i = 0; i < 20; i++) {
      const out = await refresh(r, thief, token, FORGER);
      assert.equal(codeOf(out), '4.01');
      assert.equal(out.body.err, ERR_SIG);
    }
    const out = await refresh(r, dev, token, GENUINE);
    assert.equal(codeOf(out), '2.01', show(out));
  });
});

describe('filling the used-once nonce set (F3)', () => {
  let r: Rig;
  const CAP = 300;
  beforeEach(async () => {
    r = await rig({ maxUsedNonces: CAP, maxUsedNoncesUnvouched: CAP });
  });
  afterEach(async () => {
    await r.close();
  });

  /** `n` fake IDs, one key, ten per source address: each answers its challenge with a signed request. */
  async function flood(n: number): Promise<Map<string, number>> {
    const forger = new TestDevice('x');
    const codes = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const fake = new TestDevice(`fake-${i}`, forger.key);
      const out = await ask(r, fake, `10.9.${(i / 10) | 0}.1:5683`);
      codes.set(codeOf(out), (codes.get(codeOf(out)) ?? 0) + 1);
      if (codeOf(out) === '4.29') {
        assert.equal(out.body.err, ERR_RATE);
        assert.ok(maxAgeOf(out)! >= 1 && maxAgeOf(out)! <= 300 + 16, `Max-Age ${maxAgeOf(out)}`);
      }
    }
    return codes;
  }

  it(`keeps an allowlisted and a provisioned device working after ${CAP + 10} fake IDs filled the nonce set`, async () => {
    const known = new TestDevice('known-1');
    await allow(r, known);
    const token = (await ask(r, known, GENUINE)).body.token!;
    const fresh = new TestDevice('allowlisted-1');
    await allow(r, fresh);

    const codes = await flood(CAP + 10);
    assert.equal(codes.get('2.05'), CAP, `the fakes fill their part: ${JSON.stringify([...codes])}`);
    assert.equal(codes.get('4.29'), 10, 'then get 4.29 with Max-Age (never a misleading 4.01)');
    assert.equal(r.svc.usedNonceSizes.other, CAP);

    const out = await ask(r, fresh, GENUINE);
    assert.equal(codeOf(out), '2.01', show(out));
    const rf = await refresh(r, known, token, GENUINE);
    assert.equal(codeOf(rf), '2.01', show(rf));
  });

  it('serves unvouched requests again once the entries of the full part expire', async () => {
    await flood(CAP + 1);
    const waiting = new TestDevice('waiting-1');
    assert.equal(codeOf(await ask(r, waiting, GENUINE)), '4.29');
    r.tick(300 + 17);
    assert.equal(codeOf(await ask(r, waiting, GENUINE)), '2.05');
  });

  it('never accepts a nonce twice, whichever part took it first', async () => {
    const dev = new TestDevice('twice-1');
    await allow(r, dev);
    const ch = await r.svc.request(dev.request(), { source: peer(GENUINE) });
    assert.equal(codeOf(await r.svc.request(dev.request({ nonce: ch.body.nonce! }), { source: peer(GENUINE) })), '2.01');
    const again = await r.svc.request(dev.request({ nonce: ch.body.nonce! }), { source: peer(GENUINE) });
    assert.equal(codeOf(again), '4.01');
    assert.equal(again.body.err, ERR_NONCE);
    // A nonce used by another key of the same ID (the unvouched part) is used for the device's key too.
    const other = new TestDevice(dev.id);
    const ch2 = await r.svc.request(other.request(), { source: peer(GENUINE) });
    assert.equal(codeOf(await r.svc.request(other.request({ nonce: ch2.body.nonce! }), { source: peer(GENUINE) })), '4.03');
    const reuse = await r.svc.request(dev.request({ nonce: ch2.body.nonce! }), { source: peer(GENUINE) });
    assert.equal(codeOf(reuse), '4.01');
    assert.equal(reuse.body.err, ERR_NONCE);
  });
});

describe('spoofed datagrams with a victim\'s source address (F4)', () => {
  const VICTIM = '198.51.100.7';

  it('provisions a device behind an address that spoofed junk floods', async () => {
    const r = await rig();
    try {
      const dev = new TestDevice('behind-1');
      await allow(r, dev);
      const forger = new TestDevice('whatever');
      // Junk that does not decode, well-formed requests without a nonce, and signed requests with a
      // made-up nonce, 1,000 of each from the victim's address (other ports).
      const junk = [Buffer.from('not cbor'), forger.request(), forger.request({ nonce: Buffer.alloc(24, 7) })];
      for (let i = 0; i < 1000; i++) for (const j of junk) await r.svc.request(j, { source: peer(`${VICTIM}:${1024 + i}`) });
      assert.equal(codeOf(await r.svc.request(junk[0]!, { source: peer(`${VICTIM}:9`) })), '4.29', 'the junk did spend its own bucket');
      const out = await ask(r, dev, `${VICTIM}:5683`);
      assert.equal(codeOf(out), '2.01', show(out));
    } finally {
      await r.close();
    }
  });

  it('keeps answering 5.03 with the disabled retry, never 4.29, to an address a spoofer floods while provisioning is off', async () => {
    const r = await rig({}, { addressBurst: 10, addressRate: 1 });
    try {
      await r.admin.setProvisioning(false, 'rogue server at 192.0.2.66', { by: 'admin:alice' });
      const spoofed = new TestDevice('whatever').request();
      for (let i = 0; i < 50; i++) await r.svc.request(spoofed, { source: peer(`${VICTIM}:${1024 + i}`) });
      const dev = new TestDevice('behind-off');
      const req = dev.request();
      const out = await r.svc.request(req, { source: peer(`${VICTIM}:5683`) });
      assert.equal(codeOf(out), '5.03', `the device backs off for disabledRetry, not for a rate limit: ${show(out)}`);
      assert.equal(out.body.err, ERROR_TABLE.disabled.err);
      assert.equal(out.body.retry, 300);
      assert.equal(maxAgeOf(out), 300);
      assert.equal(out.body.diag, undefined, 'over the bucket of unproven answers: no diagnostic');
      assert.ok(encodeResponse(out.body).length < req.length, 'no larger than the request');
      const fresh = await r.svc.request(req, { source: peer('192.0.2.99:5683') });
      assert.equal(codeOf(fresh), '5.03');
      assert.ok(fresh.body.diag, 'an address with room in its bucket still gets the diagnostic');
      assert.ok(!JSON.stringify(fresh.body).includes('192.0.2.66'), 'the admin\'s reason stays on the admin side');
    } finally {
      await r.close();
    }
  });

  it('does not let nonces fetched at another address spend the victim address\'s signature budget', async () => {
    const r = await rig({}, { addressBurst: 10, addressRate: 1 });
    try {
      const dev = new TestDevice('behind-2');
      await allow(r, dev);
      for (let i = 0; i < 20; i++) {
        const fake = new TestDevice(`spoof-${i}`);
        const ch = await r.svc.request(fake.request(), { source: peer(FORGER) });
        const out = await r.svc.request(fake.request({ nonce: ch.body.nonce! }), { source: peer(`${VICTIM}:5683`) });
        assert.equal(codeOf(out), '4.01', 'the nonce was sent to another address: a challenge, no signature check');
        assert.equal(out.body.err, ERR_NONCE);
      }
      const out = await ask(r, dev, `${VICTIM}:5683`);
      assert.equal(codeOf(out), '2.01', show(out));
    } finally {
      await r.close();
    }
  });

  it('bounds signature checks per IPv6 /64 as well as per address, and counts IPv4-mapped peers as IPv4', async () => {
    const r = await rig({}, { addressBurst: 10, addressRate: 1 });
    try {
      const codes: string[] = [];
      for (let i = 1; i <= 15; i++) codes.push(codeOf(await ask(r, new TestDevice(`v6-${i}`), `[2001:db8:1:2::${i.toString(16)}]:5683`)));
      assert.deepEqual(codes, [...new Array(10).fill('2.05'), ...new Array(5).fill('4.29')], 'fifteen addresses of one /64 share its ten');
      assert.equal(codeOf(await ask(r, new TestDevice('v6-other'), '[2001:db8:1:3::1]:5683')), '2.05', 'another /64 has its own');
      const v4: string[] = [];
      for (let i = 1; i <= 12; i++) v4.push(codeOf(await ask(r, new TestDevice(`v4-${i}`), `[::ffff:10.1.0.${i}]:5683`)));
      assert.deepEqual(v4, new Array(12).fill('2.05'), 'IPv4 peers of a dual-stack socket do not share ::ffff:0:0/64');
      const one: string[] = [];
      for (let i = 1; i <= 11; i++) one.push(codeOf(await ask(r, new TestDevice(`one-${i}`), `10.2.0.1:${5000 + i}`)));
      assert.deepEqual(one, [...new Array(10).fill('2.05'), '4.29'], 'an IPv4 address, all ports together');
    } finally {
      await r.close();
    }
  });

  it('bounds signature checks per IPv6 /56 and /48 too, with budgets that grow by allocation', async () => {
    const r = await rig({}, { addressBurst: 10, addressRate: 1 });
    try {
      let k = 0;
      const count = async (n: number, source: (i: number) => string): Promise<number> => {
        let checked = 0;
        for (let i = 0; i < n; i++) if (codeOf(await ask(r, new TestDevice(`p-${k++}`), source(i))) !== '4.29') checked++;
        return checked;
      };
      // One request from each of 60 /64s of one /56: the /56 holds 4 × 10.
      assert.equal(await count(60, (i) => `[2001:db8:7:${(0x100 + i).toString(16)}::1]:5683`), 40, 'the /64s of one /56 share its 40');
      // One /64 from each of 200 further /56s of the same /48: the /48 holds 16 × 10, 40 already spent.
      assert.equal(await count(200, (i) => `[2001:db8:7:${((i + 2) << 8).toString(16)}::1]:5683`), 120, 'the /56s of one /48 share its 160');
      assert.equal(codeOf(await ask(r, new TestDevice('p-next'), '[2001:db8:8:100::1]:5683')), '2.05', 'the next /48 has its own');
      r.tick(1);
      assert.equal(codeOf(await ask(r, new TestDevice('p-later'), '[2001:db8:7:ff00::1]:5683')), '2.05', 'the /48 refills at 16 a second');
    } finally {
      await r.close();
    }
  });

  it('burns a nonce whose signature did not verify, so each signature check costs a nonce', async () => {
    const r = await rig();
    try {
      const dev = new TestDevice('burn-1');
      await allow(r, dev);
      const ch = await r.svc.request(dev.request(), { source: peer(GENUINE) });
      const bad = dev.request({ nonce: ch.body.nonce! });
      bad[bad.length - 1] = bad[bad.length - 1]! ^ 1; // the last byte of the signature
      const out = await r.svc.request(bad, { source: peer(GENUINE) });
      assert.equal(codeOf(out), '4.01');
      assert.equal(out.body.err, ERR_SIG);
      const again = await r.svc.request(dev.request({ nonce: ch.body.nonce! }), { source: peer(GENUINE) });
      assert.equal(codeOf(again), '4.01', 'the nonce is spent');
      assert.equal(again.body.err, ERR_NONCE);
      assert.equal(codeOf(await r.svc.request(dev.request({ nonce: again.body.nonce! }), { source: peer(GENUINE) })), '2.01', 'a fresh one works');
    } finally {
      await r.close();
    }
  });

  it('answers a request without a valid nonce with a challenge no larger than the request (no amplification)', async () => {
    const r = await rig();
    try {
      const dev = new TestDevice('a');
      const smallest = dev.request();
      const ch = await r.svc.request(smallest, { source: peer(GENUINE) });
      assert.ok(encodeResponse(ch.body).length < smallest.length, `challenge ${encodeResponse(ch.body).length} B, request ${smallest.length} B`);
      for (const nonce of [Buffer.alloc(24), Buffer.alloc(8)]) {
        const req = dev.request({ nonce });
        const out = await r.svc.request(req, { source: peer(GENUINE) });
        assert.equal(codeOf(out), '4.01');
        assert.ok(encodeResponse(out.body).length < req.length);
      }
    } finally {
      await r.close();
    }
  });
});
