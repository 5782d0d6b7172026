/**
 * The error registry: one row per ProvErrorCode, and the wire `err` numbers exactly as
 * docs/spec/idprov-coap-v1.md §4 lists them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_TABLE, ProvError, isProvError, type ProvErrorCode } from '../src/errors.ts';

const SPEC = readFileSync(new URL('../docs/spec/idprov-coap-v1.md', import.meta.url), 'utf8');
const ADMIN_API = readFileSync(new URL('../docs/admin-api.md', import.meta.url), 'utf8');

/** The section of `doc` from the heading `start` to the next heading of the same or a higher level. */
function section(doc: string, start: string): string {
  const i = doc.indexOf(start);
  assert.ok(i >= 0, `the document has the heading ${start}`);
  const level = /^#+/.exec(start)![0].length;
  const rest = doc.slice(i + start.length);
  const end = new RegExp(`\\n#{1,${level}} `).exec(rest);
  return end ? rest.slice(0, end.index) : rest;
}

/** The `err` table of docs/spec/idprov-coap-v1.md §4.3, as the document has it: err, name, CoAP code. */
const SPEC_ERR_ROWS = [...section(SPEC, '### 4.3 `err` values').matchAll(/^\| (\d+) \| ([a-z-]+) \| ([245]\.\d\d) \|/gm)].map((m) => ({ err: Number(m[1]), code: m[2]!, coap: m[3]! }));

/** docs/spec/idprov-coap-v1.md §4 outcome table: the CoAP code of each outcome. */
const PROTOCOL_COAP: Partial<Record<ProvErrorCode, string>> = {
  malformed: '4.00',
  nonce: '4.01',
  'bad-signature': '4.01',
  'oob-mismatch': '4.01',
  rejected: '4.03',
  'key-mismatch': '4.03',
  'mac-mismatch': '4.03',
  revoked: '4.03',
  'token-expired': '4.03',
  'unknown-token-key': '4.03',
  'rate-limited': '4.29',
  disabled: '5.03',
  'too-large': '4.13',
  'unsupported-content-format': '4.15',
  'not-found': '4.04',
  'method-not-allowed': '4.05',
};

/** Every member of the ProvErrorCode union; the compiler fails here when one is added or removed. */
const ALL_CODES = Object.keys({
  malformed: 0,
  'bad-signature': 0,
  nonce: 0,
  'key-mismatch': 0,
  'mac-mismatch': 0,
  rejected: 0,
  revoked: 0,
  'token-expired': 0,
  'rate-limited': 0,
  disabled: 0,
  'oob-mismatch': 0,
  'unknown-token-key': 0,
  'too-large': 0,
  'unsupported-content-format': 0,
  'not-found': 0,
  'method-not-allowed': 0,
  unauthenticated: 0,
  forbidden: 0,
  conflict: 0,
  unavailable: 0,
  internal: 0,
} satisfies Record<ProvErrorCode, 0>) as ProvErrorCode[];

describe('error registry', () => {
  it('gives each code the HTTP status docs/admin-api.md lists for it', () => {
    const rows = [...section(ADMIN_API, '## Errors').matchAll(/^\| (\d{3}) \| `([a-z-]+)` \|/gm)].map((m) => [Number(m[1]), m[2]!] as const);
    assert.ok(rows.length >= 8, `the admin API's error table has its rows (${rows.length})`);
    for (const [status, code] of rows) assert.equal(ERROR_TABLE[code as ProvErrorCode]?.http, status, `${code}: docs/admin-api.md says HTTP ${status}`);
  });

  it('gives every row a CoAP code, an HTTP status and a meaning', () => {
    for (const code of ALL_CODES) {
      const row = ERROR_TABLE[code];
      assert.match(row.coap, /^[245]\.\d\d$/, code);
      assert.ok(Number.isInteger(row.http) && row.http >= 400 && row.http <= 599, code);
      assert.equal(String(row.http)[0], row.coap[0], `${code}: the HTTP class matches the CoAP class`);
      assert.ok(row.meaning.length > 10, code);
    }
  });

  it('numbers the wire err codes exactly as the err table of docs/spec/idprov-coap-v1.md §4.3 lists them, with their CoAP codes', () => {
    assert.equal(SPEC_ERR_ROWS.length, 12, 'the spec lists err 1..12');
    assert.deepEqual(SPEC_ERR_ROWS.map((r) => r.err), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    for (const r of SPEC_ERR_ROWS) {
      const row = ERROR_TABLE[r.code as ProvErrorCode];
      assert.ok(row, `${r.code} is in the registry`);
      assert.deepEqual([row.err, row.coap], [r.err, r.coap], r.code);
    }
  });

  it('sends an err number only with the codes the spec numbers (4.13 and 4.15 come from the CoAP layer, without a CBOR body: §1.4)', () => {
    const numbered = ALL_CODES.filter((c) => ERROR_TABLE[c].err !== undefined).sort();
    assert.deepEqual(numbered, SPEC_ERR_ROWS.map((r) => r.code).sort());
    assert.equal(ERROR_TABLE['too-large'].err, undefined);
    assert.equal(ERROR_TABLE['unsupported-content-format'].err, undefined);
  });

  it('maps each protocol outcome to the CoAP code of docs/spec/idprov-coap-v1.md §1 and §4', () => {
    for (const [code, coap] of Object.entries(PROTOCOL_COAP)) assert.equal(ERROR_TABLE[code as ProvErrorCode].coap, coap, code);
  });

  it('cannot be changed at run time', () => {
    assert.ok(Object.isFrozen(ERROR_TABLE));
  });
});

describe('ProvError', () => {
  it('carries its code, its table row and a default message from the table', () => {
    const e = new ProvError('nonce');
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'ProvError');
    assert.equal(e.code, 'nonce');
    assert.equal(e.info, ERROR_TABLE.nonce);
    assert.equal(e.message, ERROR_TABLE.nonce.meaning);
    assert.equal(e.detail, undefined);
  });

  it('keeps a custom message and non-secret detail', () => {
    const e = new ProvError('malformed', 'key 1 (id) is required', { key: 1 });
    assert.equal(e.message, 'key 1 (id) is required');
    assert.deepEqual(e.detail, { key: 1 });
  });

  it('is recognised when another copy of src/errors.ts made it (a module graph loaded twice)', async () => {
    const spec = new URL('../src/errors.ts?second-copy', import.meta.url).href;
    const other = (await import(spec)) as typeof import('../src/errors.ts');
    assert.notEqual(other.ProvError, ProvError, 'a second copy of the module, with a class of its own');
    const e = new other.ProvError('nonce');
    assert.ok(e instanceof ProvError);
    assert.equal(isProvError(e, 'nonce'), true);
    assert.ok(new ProvError('revoked') instanceof other.ProvError);
    assert.equal(new Error('x') instanceof ProvError, false);
    assert.equal(isProvError({ code: 'nonce' }), false, 'a plain object with a code is not one');
  });

  it('is recognised by isProvError, with or without a code', () => {
    const e = new ProvError('revoked');
    assert.equal(isProvError(e), true);
    assert.equal(isProvError(e, 'revoked'), true);
    assert.equal(isProvError(e, 'rejected'), false);
    assert.equal(isProvError(new Error('revoked')), false);
    assert.equal(isProvError({ code: 'revoked' }), false);
    assert.equal(isProvError(undefined), false);
  });
});
