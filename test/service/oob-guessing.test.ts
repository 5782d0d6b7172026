/**
 * Online guessing of an allowlist entry's out-of-band secret (review of the issue #11 F1 fix). A key
 * that does not prove the secret spends only the bucket of ID + that key, so a guesser that signs each
 * guess with a fresh key was bounded by nothing per ID. Wrong proofs now spend a per-ID guess budget;
 * past it, right and wrong proofs get the same held answer and no token.
 */
import assert from 'node:assert/strict';
import { ERROR_TABLE } from '../../src/errors.ts';
import { STATUS } from '../../src/protocol/messages.ts';
import { TestDevice } from '../support/device.ts';
import { allow, ask, codeOf, maxAgeOf, rig, show, type Rig } from '../support/service-rig.ts';

const ERR_OOB = ERROR_TABLE['oob-mismatch'].err!;
const SECRET = 'label-code-7Q4K-z';
const GUESSER = '198.51.100.7:4000';
const GENUINE = '203.0.113.9:5683';
const guess = (i: number): string => `guess-${i.toString().padStart(12, '0')}`;

describe('online guesses of an entry\'s out-of-band secret', () => {
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
      const out = await ask(r, new TestDevice(dev.id), GUESSER, { secret: guess(i) });
      if (codeOf(out) === '4.01') assert.equal(out.body.err, ERR_OOB, show(out));
      codes.push(codeOf(out));
    }
    const evaluated = codes.filter((c) => c === '4.01').length;
    assert.ok(evaluated <= 12, `wrong proofs evaluated for one ID within a second: ${evaluated} of 40 (${[...new Set(codes)]})`);
  });

  it('answers a right and a wrong proof alike while the ID\'s guess budget is spent, and issues no token to either', async () => {
    const dev = new TestDevice('printed-label-2');
    await allow(r, dev, { pk: undefined, secret: SECRET });
    for (let i = 0; i < 20; i++) await ask(r, new TestDevice(dev.id), GUESSER, { secret: guess(i) });
    const wrong = await ask(r, new TestDevice(dev.id), GUESSER, { secret: guess(99) });
    const right = await ask(r, new TestDevice(dev.id), GUESSER, { secret: SECRET });
    for (const out of [wrong, right]) {
      assert.equal(codeOf(out), '2.05', show(out));
      assert.equal(out.body.status, STATUS.pending, show(out));
      assert.equal(out.body.token, undefined);
      assert.equal(out.body.sealed, undefined);
    }
    assert.deepEqual(Object.keys(right.body).sort(), Object.keys(wrong.body).sort());
    assert.equal(right.body.retry, wrong.body.retry);
    assert.equal(maxAgeOf(right), maxAgeOf(wrong));
    assert.equal(right.body.nonce!.length, wrong.body.nonce!.length);
    assert.equal(await r.store.getDevice(dev.id), undefined, 'a lucky guess past the budget provisions nothing');
  });

  it('never refuses the genuine device because of the guesses, and provisions it once the guessing stops', async () => {
    const dev = new TestDevice('printed-label-3');
    await allow(r, dev, { pk: undefined, secret: SECRET });
    for (let i = 0; i < 20; i++) await ask(r, new TestDevice(dev.id), GUESSER, { secret: guess(i) });
    const held = await ask(r, dev, GENUINE, { secret: SECRET });
    assert.equal(codeOf(held), '2.05', `held, not refused: ${show(held)}`);
    assert.equal(held.body.status, STATUS.pending);
    r.tick(held.body.retry!);
    const out = await ask(r, dev, GENUINE, { secret: SECRET });
    assert.equal(codeOf(out), '2.01', show(out));
    assert.deepEqual(Buffer.from((await r.store.getDevice(dev.id))!.pk), dev.pk);
  });

  it('lets right proofs spend nothing of the guess budget', async () => {
    const dev = new TestDevice('printed-label-4');
    const other = new TestDevice('printed-label-5');
    await allow(r, dev, { pk: undefined, secret: SECRET });
    await allow(r, other, { pk: undefined, secret: SECRET });
    assert.equal(codeOf(await ask(r, dev, GENUINE, { secret: SECRET })), '2.01');
    assert.equal(r.svc.monitor.oobGuessLimits.size, 0, 'no guess bucket for an ID whose proof was right');
    await ask(r, new TestDevice(other.id), GUESSER, { secret: guess(1) });
    assert.equal(r.svc.monitor.oobGuessLimits.size, 1, 'a wrong proof opens the ID\'s guess bucket');
  });
});
