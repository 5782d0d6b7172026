/**
 * The error registry: one row per ProvErrorCode, and the wire `err` numbers exactly as
 * docs/spec/idprov-coap-v1.md §4 lists them.
 */
import assert from 'node:assert/strict';
import { ERROR_TABLE, ProvError, isProvError, type ProvErrorCode } from '../src/errors.ts';

/** docs/spec/idprov-coap-v1.md §4, verbatim. */
const PROTOCOL_ERR_LINE =
  '`err` codes: 1 malformed, 2 bad-signature, 3 nonce, 4 key-mismatch, 5 mac-mismatch, 6 rejected, ' +
  '7 revoked, 8 token-expired, 9 rate-limited, 10 disabled, 11 oob-mismatch, 12 unknown-token-key.';

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
  it('has a row for every error code and no other rows', () => {
    assert.deepEqual(Object.keys(ERROR_TABLE).sort(), [...ALL_CODES].sort());
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

  it('numbers the wire err codes 1..12 exactly as docs/spec/idprov-coap-v1.md §4 lists them', () => {
    const listed = [...PROTOCOL_ERR_LINE.matchAll(/(\d+) ([a-z-]+)/g)].map((m) => [Number(m[1]), m[2]] as const);
    assert.equal(listed.length, 12);
    assert.deepEqual(listed.map(([n]) => n), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    for (const [n, code] of listed) assert.equal(ERROR_TABLE[code as ProvErrorCode]?.err, n, code);
  });

  it('uses the numbers 1..12 for the protocol codes only (4.13 and 4.15 reuse malformed), and none above 12', () => {
    const byNumber = new Map<number, ProvErrorCode[]>();
    for (const code of ALL_CODES) {
      const n = ERROR_TABLE[code].err;
      if (n !== undefined) byNumber.set(n, [...(byNumber.get(n) ?? []), code]);
    }
    assert.deepEqual([...byNumber.keys()].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert.deepEqual(byNumber.get(1)!.sort(), ['malformed', 'too-large', 'unsupported-content-format']);
    for (let n = 2; n <= 12; n++) assert.equal(byNumber.get(n)!.length, 1, `err ${n}`);
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
