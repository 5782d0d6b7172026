/**
 * The decision rules of docs/spec/idprov-coap-v1.md §5 as pure functions: records and the clock in,
 * a decision value out, nothing stored, nothing read from the system clock.
 */
import assert from 'node:assert/strict';
import { DEFAULTS } from '../../src/config.ts';
import { policySettings } from '../../src/service/settings.ts';
import { hex, toHex } from '../support/bytes.ts';
import type { AllowEntry, DeviceRecord, PendingRecord, SubjectRecords } from '../../src/domain.ts';
import {
  activeAllowEntry,
  bytesEqual,
  decide,
  decideRefresh,
  pendingRetry,
  type Decision,
  type PolicySettings,
  type ProvisionFacts,
} from '../../src/policy/decide.ts';
import { oobProof } from '../../src/protocol/oob.ts';

/** The configured defaults (src/config.ts). */
const S: PolicySettings = policySettings(DEFAULTS);
const NOW = 1_767_225_600;
const ID = 'dev-1';
const PK = Buffer.alloc(32, 0x11);
const PK2 = Buffer.alloc(32, 0x22);
const MAC = hex('240ac4123456');
const MAC2 = hex('240ac4654321');
const NONCE = Buffer.alloc(24, 0x99);
const SECRET = 'label-code-7Q4K-long';
const SRC = '192.0.2.10:5683';

const facts = (over: Partial<ProvisionFacts> = {}): ProvisionFacts => ({ id: ID, pk: PK, type: 0, nonce: NONCE, source: SRC, ...over });
const allow = (over: Partial<AllowEntry> = {}): AllowEntry => ({ id: ID, type: 0, createdAt: NOW - 3600, ...over });
const device = (over: Partial<DeviceRecord> = {}): DeviceRecord => ({
  id: ID,
  pk: PK,
  type: 0,
  via: 'allowlist',
  provisionedAt: NOW - 86_400,
  lastSeen: NOW - 3600,
  source: '192.0.2.9:5683',
  ...over,
});
const pending = (over: Partial<PendingRecord> = {}): PendingRecord => ({
  id: ID,
  pk: PK,
  type: 0,
  source: '192.0.2.9:5683',
  firstSeen: NOW - 600,
  lastSeen: NOW - 60,
  count: 3,
  status: 'pending',
  ...over,
});
const proof = (secret = SECRET, nonce: Uint8Array = NONCE, pk: Uint8Array = PK) => oobProof(secret, nonce, pk);

function approved(d: Decision): Extract<Decision, { kind: 'approve' }> {
  assert.equal(d.kind, 'approve', `expected approve, got ${JSON.stringify(d.kind === 'refuse' ? d : d.kind)}`);
  return d as Extract<Decision, { kind: 'approve' }>;
}
function refused(d: Decision, code: string): Extract<Decision, { kind: 'refuse' }> {
  assert.equal(d.kind, 'refuse', `expected refuse, got ${d.kind}`);
  const r = d as Extract<Decision, { kind: 'refuse' }>;
  assert.equal(r.code, code);
  assert.equal(r.retryS, S.rejectedRetryS);
  assert.equal(typeof r.reason, 'string');
  return r;
}
function pendingOf(d: Decision): Extract<Decision, { kind: 'pending' }> {
  assert.equal(d.kind, 'pending', `expected pending, got ${JSON.stringify(d)}`);
  return d as Extract<Decision, { kind: 'pending' }>;
}
const flagKinds = (d: Decision): string[] => d.flags.map((f) => f.kind);

/** Deep-freeze records so that a decision that mutates its input throws. */
function frozen<T>(v: T): T {
  if (v && typeof v === 'object' && !(v instanceof Uint8Array)) {
    for (const x of Object.values(v)) frozen(x);
    Object.freeze(v);
  }
  return v;
}

describe('provisioning decisions (docs/spec/idprov-coap-v1.md §5)', () => {
  describe('rule 1: an allowlist entry', () => {
    it('approves a matching pk entry, consumes it and records the device', () => {
      const d = approved(decide(facts(), { allow: allow({ pk: PK }) }, S, NOW));
      assert.equal(d.via, 'allowlist');
      assert.equal(d.consumeAllow, true);
      assert.equal(d.clearPending, false);
      assert.deepEqual(d.flags, []);
      assert.deepEqual(d.device, { id: ID, pk: PK, type: 0, via: 'allowlist', provisionedAt: NOW, lastSeen: NOW, source: SRC });
    });

    it('refuses a pk entry with another key as key-mismatch and flags the device', () => {
      const d = refused(decide(facts({ pk: PK2 }), { allow: allow({ pk: PK }) }, S, NOW), 'key-mismatch');
      assert.deepEqual(d.flags, [{ kind: 'key-mismatch', deviceId: ID, evidence: { expected: toHex(PK), got: toHex(PK2), source: SRC } }]);
    });

    it('approves a MAC entry when the request carries the same MAC, and records the request key', () => {
      const d = approved(decide(facts({ mac: MAC }), { allow: allow({ mac: MAC }) }, S, NOW));
      assert.equal(toHex(d.device.pk), toHex(PK));
      assert.equal(toHex(d.device.mac!), toHex(MAC));
      assert.equal(d.consumeAllow, true);
    });

    it('refuses a MAC entry when the request carries another MAC', () => {
      const d = refused(decide(facts({ mac: MAC2 }), { allow: allow({ mac: MAC }) }, S, NOW), 'mac-mismatch');
      assert.deepEqual(d.flags, [{ kind: 'mac-mismatch', deviceId: ID, evidence: { expected: toHex(MAC), got: toHex(MAC2), source: SRC } }]);
    });

    it('refuses a MAC entry when the request carries no MAC', () => {
      const d = refused(decide(facts(), { allow: allow({ mac: MAC }) }, S, NOW), 'mac-mismatch');
      assert.deepEqual(flagKinds(d), ['mac-mismatch']);
      assert.equal(d.flags[0]!.evidence['got'], '');
    });

    it('compares an EUI-64 entry against the full 8 bytes', () => {
      const eui64 = hex('240ac4fffe123456');
      approved(decide(facts({ mac: eui64 }), { allow: allow({ mac: eui64 }) }, S, NOW));
      refused(decide(facts({ mac: MAC }), { allow: allow({ mac: eui64 }) }, S, NOW), 'mac-mismatch');
    });

    it('approves a secret entry with a correct OOB proof (key 7)', () => {
      const d = approved(decide(facts({ oob: proof() }), { allow: allow({ secret: SECRET }) }, S, NOW));
      assert.equal(d.consumeAllow, true);
      assert.deepEqual(d.flags, []);
    });

    it('refuses a secret entry with a wrong proof as oob-mismatch (4.01) and flags it without revealing the secret', () => {
      const d = refused(decide(facts({ oob: proof('another-secret-xyz') }), { allow: allow({ secret: SECRET }) }, S, NOW), 'oob-mismatch');
      assert.deepEqual(d.flags, [{ kind: 'oob-failed', deviceId: ID, evidence: { proofSent: 'yes', source: SRC } }]);
      assert.ok(!JSON.stringify(d).includes(SECRET));
    });

    it('refuses a proof made for another nonce or another key', () => {
      refused(decide(facts({ oob: proof(SECRET, Buffer.alloc(24, 1)) }), { allow: allow({ secret: SECRET }) }, S, NOW), 'oob-mismatch');
      refused(decide(facts({ oob: proof(SECRET, NONCE, PK2) }), { allow: allow({ secret: SECRET }) }, S, NOW), 'oob-mismatch');
    });

    it('refuses a secret entry when no proof is sent', () => {
      const d = refused(decide(facts(), { allow: allow({ secret: SECRET }) }, S, NOW), 'oob-mismatch');
      assert.deepEqual(d.flags, [{ kind: 'oob-failed', deviceId: ID, evidence: { proofSent: 'no', source: SRC } }]);
    });

    it('accepts a DTLS-PSK session whose identity is this device ID as proof of the secret', () => {
      const d = approved(decide(facts({ pskIdentity: ID }), { allow: allow({ secret: SECRET }) }, S, NOW));
      assert.equal(d.consumeAllow, true);
    });

    it('does not accept a DTLS-PSK session of another device ID as proof', () => {
      refused(decide(facts({ pskIdentity: 'dev-2' }), { allow: allow({ secret: SECRET }) }, S, NOW), 'oob-mismatch');
      refused(decide(facts({ pskIdentity: 'DEV-1' }), { allow: allow({ secret: SECRET }) }, S, NOW), 'oob-mismatch');
    });

    it('records the request key for a secret-only entry', () => {
      const d = approved(decide(facts({ pk: PK2, oob: proof(SECRET, NONCE, PK2) }), { allow: allow({ secret: SECRET }) }, S, NOW));
      assert.equal(toHex(d.device.pk), toHex(PK2));
    });

    it('requires every factor of an entry with pk, mac and secret', () => {
      const rec: SubjectRecords = { allow: allow({ pk: PK, mac: MAC, secret: SECRET }) };
      approved(decide(facts({ mac: MAC, oob: proof() }), rec, S, NOW));
      refused(decide(facts({ pk: PK2, mac: MAC, oob: proof(SECRET, NONCE, PK2) }), rec, S, NOW), 'key-mismatch');
      refused(decide(facts({ mac: MAC2, oob: proof() }), rec, S, NOW), 'mac-mismatch');
      refused(decide(facts({ oob: proof() }), rec, S, NOW), 'mac-mismatch');
      refused(decide(facts({ mac: MAC }), rec, S, NOW), 'oob-mismatch');
      refused(decide(facts({ mac: MAC, oob: proof('wrong-secret-1234') }), rec, S, NOW), 'oob-mismatch');
    });

    it('gives the device the type of its allowlist entry', () => {
      const d = approved(decide(facts({ type: 0 }), { allow: allow({ pk: PK, type: 1 }) }, S, NOW));
      assert.equal(d.device.type, 1);
    });

    it('keeps the MAC of the entry when the request sends none', () => {
      const d = approved(decide(facts({ oob: proof() }), { allow: allow({ secret: SECRET }) }, S, NOW));
      assert.equal(d.device.mac, undefined);
      const withMac = approved(decide(facts({ mac: MAC }), { allow: allow({ mac: MAC }) }, S, NOW));
      assert.equal(toHex(withMac.device.mac!), toHex(MAC));
    });

    it('clears a waiting request of the same ID when the entry approves it', () => {
      const d = approved(decide(facts(), { allow: allow({ pk: PK }), pending: pending() }, S, NOW));
      assert.equal(d.clearPending, true);
    });

    it('treats an expired entry as absent, so the device waits for an admin', () => {
      for (const expires of [NOW - 1, NOW]) {
        const d = pendingOf(decide(facts(), { allow: allow({ pk: PK, expires }) }, S, NOW));
        assert.equal(d.pending.count, 1);
        assert.equal(d.retryS, 60);
      }
      approved(decide(facts(), { allow: allow({ pk: PK, expires: NOW + 1 }) }, S, NOW));
    });

    it('ignores a consumed entry', () => {
      pendingOf(decide(facts(), { allow: allow({ pk: PK, consumedAt: NOW - 10 }) }, S, NOW));
      const d = approved(decide(facts(), { allow: allow({ pk: PK, consumedAt: NOW - 10 }), device: device() }, S, NOW));
      assert.equal(d.via, 'reprovision');
    });

    it('keeps the first provisioning time when an entry approves a device that is already provisioned', () => {
      const d = approved(decide(facts(), { allow: allow({ pk: PK }), device: device() }, S, NOW));
      assert.equal(d.device.provisionedAt, NOW - 86_400);
      assert.equal(d.device.lastSeen, NOW);
    });
  });

  describe('activeAllowEntry', () => {
    it('returns an entry until its expiry second and not after, and never a consumed one', () => {
      const e = allow({ pk: PK, expires: NOW + 10 });
      assert.equal(activeAllowEntry(e, NOW + 9), e);
      assert.equal(activeAllowEntry(e, NOW + 10), undefined);
      const forever = allow({ pk: PK });
      assert.equal(activeAllowEntry(forever, NOW + 10 ** 9), forever);
      assert.equal(activeAllowEntry(allow({ pk: PK, consumedAt: 0 }), NOW), undefined);
      assert.equal(activeAllowEntry(undefined, NOW), undefined);
    });
  });

  describe('rule 2: a provisioned device', () => {
    it('re-provisions the same key idempotently', () => {
      const rec = { device: device({ type: 2, via: 'admin', mac: MAC }) };
      const d = approved(decide(facts({ mac: MAC, type: 0 }), rec, S, NOW));
      assert.equal(d.via, 'reprovision');
      assert.equal(d.consumeAllow, false);
      assert.equal(d.clearPending, false);
      assert.deepEqual(d.flags, []);
      assert.deepEqual(d.device, { id: ID, pk: PK, mac: MAC, type: 2, via: 'admin', provisionedAt: NOW - 86_400, lastSeen: NOW, source: SRC });
      // The same request again gives the same decision.
      assert.deepEqual(decide(facts({ mac: MAC, type: 0 }), rec, S, NOW), d);
    });

    it('refuses another key as key-mismatch and flags a key change (a key change needs an admin)', () => {
      const d = refused(decide(facts({ pk: PK2 }), { device: device() }, S, NOW), 'key-mismatch');
      assert.deepEqual(d.flags, [{ kind: 'key-changed', deviceId: ID, evidence: { recorded: toHex(PK), got: toHex(PK2), source: SRC } }]);
    });

    it('re-provisions but flags a changed MAC', () => {
      const d = approved(decide(facts({ mac: MAC2 }), { device: device({ mac: MAC }) }, S, NOW));
      assert.deepEqual(flagKinds(d), ['mac-changed']);
      assert.equal(toHex(d.device.mac!), toHex(MAC2));
    });

    it('keeps the recorded MAC when the request sends none', () => {
      const d = approved(decide(facts(), { device: device({ mac: MAC }) }, S, NOW));
      assert.deepEqual(d.flags, []);
      assert.equal(toHex(d.device.mac!), toHex(MAC));
    });
  });

  describe('rule 3: an unknown device', () => {
    it('stores a pending request with count 1 and asks it to retry in 60 s', () => {
      const d = pendingOf(decide(facts({ mac: MAC, type: 1 }), {}, S, NOW));
      assert.equal(d.retryS, 60);
      assert.deepEqual(d.flags, []);
      assert.deepEqual(d.pending, { id: ID, pk: PK, mac: MAC, type: 1, source: SRC, firstSeen: NOW, lastSeen: NOW, count: 1, status: 'pending' });
    });

    it('backs off by 30 s per authenticated repeat: 60, 90, 120 … capped at 600', () => {
      let rec: SubjectRecords = {};
      const hints: number[] = [];
      for (let i = 0; i < 25; i++) {
        const d = pendingOf(decide(facts(), rec, S, NOW + i * 100));
        hints.push(d.retryS);
        assert.equal(d.pending.count, i + 1);
        assert.equal(d.pending.firstSeen, NOW);
        assert.equal(d.pending.lastSeen, NOW + i * 100);
        rec = { pending: d.pending };
      }
      assert.deepEqual(hints.slice(0, 4), [60, 90, 120, 150]);
      assert.equal(hints[17], 570);
      assert.equal(hints[18], 600);
      assert.ok(hints.slice(18).every((h) => h === 600));
    });

    it('computes the retry hint from the configured settings', () => {
      const s = { ...S, pendingInitialS: 10, pendingStepS: 5, pendingMaxS: 22 };
      assert.deepEqual([0, 1, 2, 3, 4, 100].map((n) => pendingRetry(n, s)), [10, 10, 15, 20, 22, 22]);
      assert.deepEqual([1, 2, 19, 20].map((n) => pendingRetry(n, S)), [60, 90, 600, 600]);
    });

    it('keeps waiting and flags a key change when the same ID comes back with another key', () => {
      const d = pendingOf(decide(facts({ pk: PK2 }), { pending: pending() }, S, NOW));
      assert.equal(d.pending.count, 4);
      assert.equal(toHex(d.pending.pk), toHex(PK2), 'the admin is shown the latest key');
      assert.equal(d.pending.status, 'pending');
      assert.deepEqual(d.flags, [{ kind: 'key-changed', deviceId: ID, evidence: { previous: toHex(PK), got: toHex(PK2), source: SRC } }]);
    });

    it('approves via the admin exactly the key that was shown, and clears the pending request', () => {
      const d = approved(decide(facts({ type: 0 }), { pending: pending({ status: 'approved', type: 2, decidedAt: NOW - 5, decidedBy: 'admin:alice' }) }, S, NOW));
      assert.equal(d.via, 'admin');
      assert.equal(d.clearPending, true);
      assert.equal(d.consumeAllow, false);
      assert.deepEqual(d.flags, []);
      assert.equal(d.device.type, 2, 'the type the admin saw');
      assert.equal(d.device.via, 'admin');
      assert.equal(d.device.provisionedAt, NOW);
    });

    it('keeps an approved request pending and flags it when another key arrives', () => {
      const p = pending({ status: 'approved', decidedAt: NOW - 5 });
      const d = pendingOf(decide(facts({ pk: PK2 }), { pending: p }, S, NOW));
      assert.equal(toHex(d.pending.pk), toHex(PK), 'the approval stays with the approved key');
      assert.equal(d.pending.status, 'approved');
      assert.equal(d.pending.count, p.count + 1);
      assert.equal(d.retryS, pendingRetry(p.count + 1, S));
      assert.deepEqual(d.flags, [{ kind: 'approved-key-changed', deviceId: ID, evidence: { approved: toHex(PK), got: toHex(PK2), source: SRC } }]);
      // The approved key still gets through afterwards.
      approved(decide(facts(), { pending: d.pending }, S, NOW + 1));
    });
  });

  describe('rejections and revocations (rule 3, rule 5)', () => {
    const rejected = pending({ status: 'rejected', decidedAt: NOW - 100, decidedBy: 'admin:alice' });

    it('refuses a rejected device as rejected, retry 3600', () => {
      const d = refused(decide(facts(), { pending: rejected }, S, NOW), 'rejected');
      assert.equal(d.retryS, 3600);
      assert.deepEqual(d.flags, []);
    });

    it('keeps a rejected device rejected when a pre-approval for it arrives later', () => {
      refused(decide(facts(), { pending: rejected, allow: allow({ pk: PK }) }, S, NOW), 'rejected');
      refused(decide(facts({ oob: proof() }), { pending: rejected, allow: allow({ secret: SECRET }) }, S, NOW), 'rejected');
      refused(decide(facts({ pskIdentity: ID }), { pending: rejected, allow: allow({ secret: SECRET }) }, S, NOW), 'rejected');
    });

    it('keeps a rejected device rejected even when it was provisioned before (a reject overrides an approval)', () => {
      refused(decide(facts(), { pending: rejected, device: device() }, S, NOW), 'rejected');
      refused(decide(facts(), { pending: rejected, device: device(), allow: allow({ pk: PK }) }, S, NOW), 'rejected');
    });

    it('refuses a revoked device as revoked, whatever else is on record', () => {
      const revocation = { id: ID, at: NOW - 10, by: 'admin:bob', reason: 'stolen' };
      for (const rec of [{}, { device: device() }, { allow: allow({ pk: PK }) }, { pending: pending({ status: 'approved' }) }, { pending: rejected }] as SubjectRecords[]) {
        refused(decide(facts(), { ...rec, revocation }, S, NOW), 'revoked');
      }
    });

    it('uses the configured retry hint for every refusal', () => {
      const s = { ...S, rejectedRetryS: 77 };
      for (const [rec, f] of [
        [{ pending: rejected }, facts()],
        [{ revocation: { id: ID, at: 0, by: 'x' } }, facts()],
        [{ device: device() }, facts({ pk: PK2 })],
        [{ allow: allow({ mac: MAC }) }, facts()],
        [{ allow: allow({ secret: SECRET }) }, facts()],
      ] as Array<[SubjectRecords, ProvisionFacts]>) {
        const d = decide(f, rec, s, NOW);
        assert.equal(d.kind, 'refuse');
        assert.equal((d as Extract<Decision, { kind: 'refuse' }>).retryS, 77);
      }
    });
  });

  describe('purity', () => {
    it('does not modify the records or facts it is given', () => {
      const cases: Array<[ProvisionFacts, SubjectRecords]> = [
        [facts(), {}],
        [facts(), { allow: allow({ pk: PK }), pending: pending() }],
        [facts({ pk: PK2 }), { pending: pending() }],
        [facts({ pk: PK2 }), { pending: pending({ status: 'approved' }) }],
        [facts(), { device: device({ mac: MAC }) }],
        [facts({ mac: MAC2 }), { device: device({ mac: MAC }) }],
      ];
      for (const [f, rec] of cases) {
        const before = JSON.stringify([f, rec]);
        decide(frozen(f), frozen(rec), frozen({ ...S }), NOW);
        assert.equal(JSON.stringify([f, rec]), before);
      }
    });

    it('decides from the clock it is given', () => {
      const rec = { allow: allow({ pk: PK, expires: NOW + 100 }) };
      assert.equal(decide(facts(), rec, S, NOW + 99).kind, 'approve');
      assert.equal(decide(facts(), rec, S, NOW + 100).kind, 'pending');
    });
  });

  describe('refresh (docs/spec/idprov-coap-v1.md §5: valid, unexpired, unrevoked token)', () => {
    const rf = { id: ID, cnf: PK, source: SRC };

    it('issues a new token to a provisioned device whose key made the request', () => {
      const d = decideRefresh(rf, { device: device() }, S, NOW);
      assert.equal(d.kind, 'issue');
      if (d.kind === 'issue') {
        assert.equal(d.device.lastSeen, NOW);
        assert.equal(d.device.source, SRC);
        assert.equal(d.device.provisionedAt, NOW - 86_400);
        assert.equal(toHex(d.device.pk), toHex(PK));
      }
    });

    const refusal = (rec: SubjectRecords, code: string, r = rf) => {
      const d = decideRefresh(r, rec, S, NOW);
      assert.equal(d.kind, 'refuse');
      if (d.kind === 'refuse') {
        assert.equal(d.code, code);
        assert.equal(d.retryS, S.rejectedRetryS);
      }
    };

    it('refuses a revoked device', () => refusal({ device: device(), revocation: { id: ID, at: NOW, by: 'admin:bob' } }, 'revoked'));
    it('refuses a rejected device', () => refusal({ device: device(), pending: pending({ status: 'rejected' }) }, 'rejected'));
    it('refuses a device that is no longer provisioned', () => refusal({}, 'revoked'));
    it('refuses a token bound to a key the admin has since changed', () => refusal({ device: device({ pk: PK2 }) }, 'key-mismatch'));
    it('ignores allowlist entries and waiting requests for refresh', () => refusal({ allow: allow({ pk: PK }), pending: pending({ status: 'approved' }) }, 'revoked'));
  });

  describe('bytesEqual', () => {
    it('compares bytes, and is false for different lengths or a missing side', () => {
      assert.equal(bytesEqual(PK, Buffer.from(PK)), true);
      assert.equal(bytesEqual(PK, PK2), false);
      assert.equal(bytesEqual(PK, PK.subarray(0, 31)), false);
      assert.equal(bytesEqual(undefined, PK), false);
      assert.equal(bytesEqual(PK, undefined), false);
      assert.equal(bytesEqual(undefined, undefined), false);
      assert.equal(bytesEqual(new Uint8Array(0), new Uint8Array(0)), true);
    });
  });
});
