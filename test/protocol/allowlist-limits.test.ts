/**
 * Bounds of the allowlist reader (security review F7, F8, F10): linear work whatever the line length
 * and chunking, a bounded buffer for CSV rows and JSON elements, upper bounds on every field, and the
 * device IDs "." and ".." refused.
 */
import assert from 'node:assert/strict';
import { ALLOWLIST_LIMITS, AllowlistReader, parseAllowlist } from '../../src/protocol/allowlist.ts';
import { isValidDeviceId, parseRequestBody, encodeRequestBody } from '../../src/protocol/messages.ts';

const NOW = 1_767_225_600;
const MB = 1024 * 1024;
const CHUNK = 64 * 1024;
const LIMIT = ALLOWLIST_LIMITS.rowChars;

/** Feed `text` in pieces of `size` characters; the reader after `end()`. */
function feed(text: string, size: number, maxRows?: number): { r: AllowlistReader; entries: number } {
  const r = new AllowlistReader({ now: NOW }, 20, maxRows);
  let entries = 0;
  for (let i = 0; i < text.length; i += size) entries += r.push(text.slice(i, i + size)).length;
  entries += r.end().length;
  return { r, entries };
}

/** A MAC for row `i`. */
const mac = (i: number): string => `24:0a:${Buffer.from([i >> 24, i >> 16, i >> 8, i]).toString('hex').replace(/(..)(?!$)/g, '$1:')}`;

describe('allowlist reader bounds (security review F7, F8, F10)', () => {
  describe('CSV work is linear in the input (F7)', () => {
    it('refuses a 10 MB single-line CSV after reading at most one row limit of it, naming the line', () => {
      const header = 'id,secret\n';
      const text = header + 'x'.repeat(10 * MB);
      for (const size of [CHUNK, text.length]) {
        const { r, entries } = feed(text, size);
        assert.equal(entries, 0);
        assert.equal(r.fatal, true);
        assert.equal(r.errors.length, 1, JSON.stringify(r.errors));
        assert.equal(r.errors[0]!.line, 2);
        assert.match(r.errors[0]!.message, new RegExp(`longer than ${LIMIT} characters`));
        assert.ok(r.scanned <= header.length + LIMIT + 1, `scanned ${r.scanned} characters of ${text.length}`);
        assert.ok(r.maxBuffered <= LIMIT, `held ${r.maxBuffered} characters`);
      }
      const whole = parseAllowlist(text, { now: NOW });
      assert.deepEqual([whole.entries.length, whole.errors[0]!.line], [0, 2]);
    });

    it('refuses an over-long quoted row the same way, even when its line breaks are inside quotes', () => {
      const text = `id,secret\ndev-1,"${'ab\n'.repeat(LIMIT)}"\n`;
      const { r } = feed(text, 1000);
      assert.equal(r.fatal, true);
      assert.equal(r.errors[0]!.line, 2);
      assert.ok(r.scanned <= 'id,secret\n'.length + LIMIT + 1);
    });

    it('consumes every character exactly once in any chunking, for short rows and for a long quoted row split into 1-character pieces', () => {
      const rows = Array.from({ length: 20_000 }, (_, i) => `dev-${i},${mac(i)}`);
      const text = `id,mac\r\n# a comment, with a "quote\r\n${rows.join('\r\n')}\r\n`;
      for (const size of [CHUNK, 1000, 7]) {
        const { r, entries } = feed(text, size);
        assert.deepEqual([entries, r.errorCount, r.scanned], [20_000, 0, text.length], `pieces of ${size}`);
      }
      // One row of ~16 000 characters (a secret with line breaks, too long as a secret) fed one character at a time.
      const long = `id,secret\ndev-1,"${'s\r\n'.repeat(5000)}"\ndev-2,sixteen-chars-ok\n`;
      const { r, entries } = feed(long, 1);
      assert.equal(r.scanned, long.length);
      assert.equal(r.fatal, false);
      assert.equal(entries, 1);
      assert.deepEqual([r.errors[0]!.line, r.errors[0]!.message.startsWith('secret: longer than 64 bytes')], [2, true]);
    });
  });

  describe('JSON is read element by element with a bounded buffer (F7)', () => {
    it('reads a 50 MB JSON array holding at most one element of it at a time', function () {
      this.timeout(120_000);
      const pad = ' '.repeat(900);
      const element = (i: number) => `{"id": "d-${i}",${pad}"mac": "${mac(i)}"}`;
      const r = new AllowlistReader({ now: NOW }, 20);
      let entries = 0;
      let size = 1;
      let piece = '[\n';
      for (let i = 0; size < 50 * MB; i++) {
        piece += `${i ? ',\n' : ''}${element(i)}`;
        if (piece.length >= CHUNK) {
          entries += r.push(piece).length;
          size += piece.length;
          piece = '';
        }
      }
      entries += r.push(`${piece}\n]\n`).length + r.end().length;
      assert.equal(r.errorCount, 0, JSON.stringify(r.errors));
      assert.ok(entries > 50_000, `${entries} entries`);
      assert.equal(r.rows, entries);
      assert.ok(r.maxBuffered <= element(entries).length + 2, `held ${r.maxBuffered} characters between pieces`);
      assert.ok(r.maxBuffered <= LIMIT);
    });

    it('refuses a 50 MB JSON element after reading at most one element limit of it', () => {
      const text = `[{"id": "dev-1", "secret": "${'x'.repeat(50 * MB)}"}]`;
      const { r, entries } = feed(text, CHUNK);
      assert.equal(entries, 0);
      assert.equal(r.fatal, true);
      assert.deepEqual([r.errors.length, r.errors[0]!.line], [1, 1]);
      assert.match(r.errors[0]!.message, /^JSON: entry longer than/);
      assert.ok(r.scanned <= LIMIT + 2, `scanned ${r.scanned}`);
      assert.ok(r.maxBuffered <= LIMIT);
    });

    it('gives the line of the element in a syntax error, stops there and keeps no entries', () => {
      for (const [text, line] of [
        ['[\n{"id": "dev-1", "mac": "24:0a:c4:00:00:01"},\n{"id": "dev-2" "mac": 1}\n]', 3],
        ['[\n{"id": "dev-1", "mac": "24:0a:c4:00:00:01"},\n]', 3],
        ['[\n{"id": "dev-1", "mac": "24:0a:c4:00:00:01"}\n{"id": "dev-2"}]', 3],
        ['[{"id": "dev-1", "mac": "24:0a:c4:00:00:01"}] x', 1],
        ['[{"id": "dev-1", "mac": "24:0a:c4:00:00:01"},\n\n', 3],
        [`[{"id": "dev-1", "x": ${'['.repeat(40)}${']'.repeat(40)}}]`, 1],
      ] as const) {
        for (const size of [1, 5, text.length]) {
          const { r } = feed(text, size);
          assert.equal(r.fatal, true, text);
          assert.equal(r.errors.length, 1, `${text}: ${JSON.stringify(r.errors)}`);
          assert.equal(r.errors[0]!.line, line, text);
          assert.ok(r.errors[0]!.message.startsWith('JSON:'), r.errors[0]!.message);
        }
        assert.deepEqual(parseAllowlist(text, { now: NOW }).entries, [], text);
      }
    });

    it('refuses an upload with more rows than the cap, as a fatal error on the first row over it', () => {
      const csv = `id,mac\n${[0, 1, 2, 3].map((i) => `dev-${i},${mac(i)}`).join('\n')}\n`;
      const json = JSON.stringify([0, 1, 2, 3].map((i) => ({ id: `dev-${i}`, mac: mac(i) })));
      for (const text of [csv, json]) {
        const { r } = feed(text, 3, 3);
        assert.equal(r.fatal, true);
        assert.equal(r.errors.length, 1);
        assert.match(r.errors[0]!.message, /more than 3 rows/);
        assert.equal(feed(text, 3, 4).r.fatal, false);
      }
    });
  });

  describe('field bounds (F8)', () => {
    const PK = '79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664';
    const cases: { what: string; row: Record<string, string>; prefix: string }[] = [
      { what: 'a 65-byte secret', row: { id: 'dev-1', secret: 's'.repeat(65) }, prefix: 'secret: longer than 64 bytes' },
      { what: 'a secret of 22 characters that is 66 UTF-8 bytes', row: { id: 'dev-1', secret: '€'.repeat(22) }, prefix: 'secret: longer than 64 bytes' },
      { what: 'a 10 kB secret', row: { id: 'dev-1', secret: 'x'.repeat(10_000) }, prefix: 'secret: longer than 64 bytes' },
      { what: 'a pk longer than 256 characters', row: { id: 'dev-1', pk: `${PK}${' '.repeat(200)}` }, prefix: 'pk: longer than 256' },
      { what: 'a mac longer than 23 characters', row: { id: 'dev-1', mac: '24:0a:c4:00:00:01:02:03:04' }, prefix: 'mac: longer than 23' },
      { what: 'an expiry longer than 40 characters', row: { id: 'dev-1', mac: '24:0a:c4:00:00:01', expires: `${'0'.repeat(41)}` }, prefix: 'expires: longer than 40' },
      { what: 'a type longer than 16 characters', row: { id: 'dev-1', mac: '24:0a:c4:00:00:01', type: 'device'.repeat(4) }, prefix: 'type:' },
      { what: 'an id of 65 characters', row: { id: 'd'.repeat(65), mac: '24:0a:c4:00:00:01' }, prefix: 'id:' },
    ];
    for (const c of cases) {
      it(`refuses ${c.what} as an invalid row with a reason, in CSV and JSON`, () => {
        const keys = Object.keys(c.row);
        const csv = `${keys.join(',')}\n${keys.map((k) => `"${c.row[k]}"`).join(',')}\n`;
        for (const text of [csv, JSON.stringify([c.row])]) {
          const r = parseAllowlist(text, { now: NOW });
          assert.equal(r.entries.length, 0, text.slice(0, 80));
          assert.equal(r.errors.length, 1, JSON.stringify(r.errors).slice(0, 300));
          assert.ok(r.errors[0]!.message.startsWith(c.prefix), r.errors[0]!.message);
        }
      });
    }

    it('accepts the boundaries: a 64-character id and secrets of 64 UTF-8 bytes', () => {
      const r = parseAllowlist(JSON.stringify([{ id: 'd'.repeat(64), secret: 's'.repeat(64) }, { id: 'dev-2', secret: `${'€'.repeat(21)}x` }]), { now: NOW });
      assert.deepEqual(r.errors, []);
      assert.equal(r.entries.length, 2);
    });
  });

  describe('device IDs "." and ".." (F10)', () => {
    it('are not valid device IDs, though other IDs made of dots are', () => {
      assert.equal(isValidDeviceId('.'), false);
      assert.equal(isValidDeviceId('..'), false);
      for (const ok of ['...', '.a', 'a.', '..x', 'a:b', '-']) assert.equal(isValidDeviceId(ok), true, ok);
    });

    it('are refused as allowlist rows with a reason', () => {
      for (const id of ['.', '..']) {
        const r = parseAllowlist(`id,mac\n${id},24:0a:c4:00:00:01\n`, { now: NOW });
        assert.deepEqual([r.entries.length, r.errors[0]!.line], [0, 2]);
        assert.match(r.errors[0]!.message, /^id: .*not "\." or "\.\."/);
      }
    });

    it('are refused in a request body as malformed (4.00)', () => {
      for (const id of ['.', '..']) {
        const body = encodeRequestBody({ id, pk: new Uint8Array(32), type: 0 });
        assert.throws(() => parseRequestBody(body), (e: Error & { code?: string }) => e.code === 'malformed' && /not "\." or "\.\."/.test(e.message));
      }
    });
  });
});
