/**
 * Issue 11 F11: an unknown PSK identity, a known one with a wrong key and an allowlisted one without
 * a secret take the same path to their `bad_record_mac`. Tested by structure, not by time: the same
 * function runs once per handshake with the same inputs, the key it yields has the same length for
 * every identity without a usable PSK, and the lookup runs the same steps for every class. (The
 * timings are measured by tools/dtls-peers/psk-timing.ts and reported in docs/dtls.md.)
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { AllowEntry } from '../../../src/domain.ts';
import { allowlistPsk } from '../../../src/service/psk.ts';
import { SqliteStore } from '../../../src/store/sqlite/store.ts';
import { prf } from '../../../src/transport/dtls/crypto.ts';
import { DUMMY_PSK_LENGTH, PskSelector, type PskChoice } from '../../../src/transport/dtls/psk.ts';
import { ALERT } from '../../../src/transport/dtls/wire.ts';
import { DtlsClient, HandshakeError } from '../../../tools/dtls-peers/client.ts';
import { tempDir } from '../../support/temp-dir.ts';
import { PSK, PSK_ID, startDtls } from '../../support/dtls-server.ts';

/** A selector that records every call (identity, whether a PSK came, the key it chose). */
class RecordingSelector extends PskSelector {
  readonly calls: Array<{ identity: string; lookedUp: number | undefined; key: Buffer; known: boolean }> = [];
  override select(identity: Buffer, psk: Buffer | undefined): PskChoice {
    const c = super.select(identity, psk);
    this.calls.push({ identity: identity.toString(), lookedUp: psk?.length, key: Buffer.from(c.key), known: c.known });
    return c;
  }
}

const NO_SECRET = 'allowlisted-no-secret';

describe('DTLS PSK failures take one path for every identity (issue 11 F11)', function () {
  this.timeout(60_000);

  it('runs the same selection once per handshake for an unknown ID, a wrong PSK and an entry without a secret, and fails each with bad_record_mac', async () => {
    const sel = new RecordingSelector(randomBytes);
    // The lookup as src/server.ts answers it: a PSK for a live entry, nothing otherwise.
    const s = await startDtls({ pskSelector: sel, pskLookup: async (id) => (id === PSK_ID ? PSK : undefined) });
    try {
      const cases = [
        ['unknown-device', PSK],
        [PSK_ID, Buffer.from('not the right key')],
        [NO_SECRET, PSK],
        ['unknown-device', PSK],
      ] as const;
      for (const [identity, key] of cases) {
        await assert.rejects(
          DtlsClient.connect({ host: '127.0.0.1', port: s.port, psk: { identity, key } }),
          (e: unknown) => e instanceof HandshakeError && e.alert === ALERT.badRecordMac,
        );
      }
      assert.deepEqual(
        sel.calls.map((c) => [c.identity, c.known, c.key.length]),
        [
          ['unknown-device', false, DUMMY_PSK_LENGTH],
          [PSK_ID, true, PSK.length],
          [NO_SECRET, false, DUMMY_PSK_LENGTH],
          ['unknown-device', false, DUMMY_PSK_LENGTH],
        ],
      );
      assert.deepEqual(sel.calls[0]!.key, sel.calls[3]!.key, 'the dummy key of an identity is deterministic');
      assert.notDeepEqual(sel.calls[0]!.key, sel.calls[2]!.key, 'and differs between identities');
      assert.equal(s.t.stats().handshakesFailed, 4);
      assert.equal(s.t.stats().handshakes, 0);
    } finally {
      await s.close();
    }
  });

  it('derives the dummy key as HMAC-SHA256(per-server secret, identity), also when the lookup answers an empty key', () => {
    const secret = randomBytes(32);
    const sel = new PskSelector(() => Buffer.from(secret));
    const id = Buffer.from('some-id');
    const expect = createHmac('sha256', secret).update(id).digest();
    for (const psk of [undefined, Buffer.alloc(0)]) assert.deepEqual(sel.select(id, psk), { key: expect, known: false });
    const real = Buffer.from('a real secret');
    const c = sel.select(id, real);
    assert.deepEqual(c, { key: real, known: true });
    assert.notEqual(c.key, real, 'a copy, which the caller zeroes');
    assert.notDeepEqual(new PskSelector(randomBytes).select(id, undefined).key, expect, 'another server, another dummy');
  });

  it('looks an ID up with the same steps whether it is unknown, has no secret, is expired or is live', async () => {
    const entries: Record<string, AllowEntry> = {
      live: { id: 'live', type: 0, createdAt: 1, secret: 'correct horse' },
      nosecret: { id: 'nosecret', type: 0, createdAt: 1, pk: new Uint8Array(32).fill(7) },
      empty: { id: 'empty', type: 0, createdAt: 1, secret: '', pk: new Uint8Array(32).fill(8) },
      expired: { id: 'expired', type: 0, createdAt: 1, secret: 'correct horse', expires: 99 },
    };
    const t = tempDir();
    const store = await SqliteStore.open(join(t.dir, 'db.sqlite'));
    try {
      await store.apply(Object.values(entries).map((entry) => ({ kind: 'allow.upsert', entry }) as const));
      // The statement behind pskOf yields one row for every id, so every class decodes one row.
      const rows = await Promise.all(['unknown', 'nosecret', 'empty', 'expired', 'live'].map((id) => store.pskOf(id)));
      assert.deepEqual(rows, [{}, {}, { secret: '' }, { secret: 'correct horse', expires: 99 }, { secret: 'correct horse' }]);
      const reads: string[] = [];
      const lookup = allowlistPsk({ pskOf: (id: string) => (reads.push(id), store.pskOf(id)) }, () => 100);
      const got = await Promise.all(['unknown', 'nosecret', 'empty', 'expired', 'live'].map(lookup));
      assert.deepEqual(reads, ['unknown', 'nosecret', 'empty', 'expired', 'live'], 'one store read each');
      assert.deepEqual(got.slice(0, 4), [undefined, undefined, undefined, undefined]);
      assert.deepEqual(got[4], Buffer.from('correct horse'));
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('keeps the TLS PRF output for keys longer than HMAC’s block, which it now hashes once up front', () => {
    // Reference P_SHA256 with the raw key (RFC 5246 §5; HMAC hashes a long key itself).
    const ref = (key: Buffer, label: string, seed: Buffer, len: number): Buffer => {
      const ls = Buffer.concat([Buffer.from(label, 'latin1'), seed]);
      const out: Buffer[] = [];
      let a = ls;
      while (Buffer.concat(out).length < len) {
        a = createHmac('sha256', key).update(a).digest();
        out.push(createHmac('sha256', key).update(a).update(ls).digest());
      }
      return Buffer.concat(out).subarray(0, len);
    };
    for (const n of [1, 32, 64, 65, 68, 200]) {
      const key = randomBytes(n);
      const seed = randomBytes(64);
      assert.deepEqual(prf(key, 'master secret', seed, 48), ref(key, 'master secret', seed, 48), `key of ${n} bytes`);
    }
  });
});
