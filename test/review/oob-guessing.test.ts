/**
 * Review of the issue #11 F1 fix: online guessing of an allowlist entry's out-of-band secret. Before
 * the fix every signed request for an ID spent that ID's bucket, so wrong OOB proofs for one entry
 * were bounded per ID (rateBurstDevice, then rateLimitDevice a second). Now a key that does not prove
 * the secret spends only the bucket of ID + that key, so a guesser that signs each guess with a fresh
 * key is bounded by nothing per ID: only the signature budget of each address (or /64) it uses.
 */
import assert from 'node:assert/strict';
import { ERROR_TABLE } from '../../src/errors.ts';
import { TestDevice } from '../support/device.ts';
import { allow, ask, rig, show, type Rig } from '../service/support.ts';

const ERR_OOB = ERROR_TABLE['oob-mismatch'].err!;
const SECRET = 'label-code-7Q4K-z';

describe('online guesses of an entry\'s out-of-band secret (review of F1)', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await rig();
  });
  afterEach(async () => {
    await r.close();
  });

  it('bounds wrong out-of-band proofs per device ID, however many keys the guesser signs with', async () => {
    const dev = new TestDevice('printed-label');
    await allow(r, dev, { pk: undefined, secret: SECRET });
    const codes: string[] = [];
    // 40 guesses within one second from one address, a fresh key for each: the ID's burst is 10.
    for (let i = 0; i < 40; i++) {
      const out = await ask(r, new TestDevice(dev.id), '198.51.100.7:4000', { secret: `guess-${i.toString().padStart(12, '0')}` });
      if (out.code === '4.01') assert.equal(out.body.err, ERR_OOB, show(out));
      codes.push(out.code);
    }
    const evaluated = codes.filter((c) => c === '4.01').length;
    assert.ok(evaluated <= 12, `wrong proofs evaluated for one ID within a second: ${evaluated} of 40 (${[...new Set(codes)]})`);
  });
});
