import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { AllowlistReader, parseAllowlist } from '../../src/protocol/allowlist.ts';
import { prng } from '../support/mutation.ts';

const NOW = 1_800_000_000;
const fixture = (name: string) => readFileSync(new URL(`../../fixtures/allowlists/${name}`, import.meta.url), 'utf8');

function streamed(text: string, sizes: () => number) {
  const r = new AllowlistReader({ now: NOW });
  const entries = [];
  for (let i = 0; i < text.length; ) {
    const n = Math.max(1, sizes());
    entries.push(...r.push(text.slice(i, i + n)));
    i += n;
  }
  entries.push(...r.end());
  return { entries, errors: r.errors, warnings: r.warnings };
}

describe('the incremental allowlist reader (sidecar uploads)', () => {
  const tricky =
    '\uFEFFid,pk,secret,mac\r\n# comment with a "quote\r\n' +
    'a-1,,"multi\r\nline, secret ""x""",aa:bb:cc:dd:ee:01\r\n,,,\r\n' +
    'a-2,,plain-secret-123456,\r\nbad id,,,aa:bb:cc:dd:ee:02\r\na-3,,"unterminated';
  for (const [name, text] of [
    ['good.csv', fixture('good.csv')],
    ['bad-row.csv', fixture('bad-row.csv')],
    ['good.json', fixture('good.json')],
    ['a file with CRLF, comments, quoted newlines and an unterminated field', tricky],
  ] as const) {
    it(`gives the same entries, errors and line numbers in any chunking as in one piece: ${name}`, () => {
      const whole = parseAllowlist(text, { now: NOW });
      for (const seed of [1, 2, 3]) {
        const rnd = prng(seed);
        for (const gen of [() => 1, () => 2, () => 1 + Math.floor(rnd() * 40)]) {
          assert.deepEqual(streamed(text, gen), whole);
        }
      }
    });
  }

  it('returns rows as soon as they are complete, before the end of the upload', () => {
    const r = new AllowlistReader({ now: NOW });
    assert.deepEqual(r.push('id,mac\nd-1,aa:bb:cc:dd:ee:ff\nd-2,aa:bb'), [
      { id: 'd-1', mac: Buffer.from('aabbccddeeff', 'hex'), type: 0, createdAt: NOW },
    ]);
    assert.equal(r.push(':cc:dd:ee:00\n').length, 1);
    assert.deepEqual(r.end(), []);
    assert.equal(r.rows, 2);
  });

  it('counts every error but lists only the first maxListed', () => {
    const r = new AllowlistReader({ now: NOW }, 5);
    r.push('id,mac\n' + Array.from({ length: 50 }, (_, i) => `bad ${i},zz`).join('\n'));
    r.end();
    assert.equal(r.errorCount, 50);
    assert.equal(r.errors.length, 5);
    assert.equal(r.errors[0]!.line, 2);
  });
});
