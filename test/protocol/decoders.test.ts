/**
 * Every decoder of the wire contract (docs/spec/idprov-coap-v1.md §2, §4, §5) against golden vectors in
 * fixtures/protocol/*.json, every strict prefix of every valid input, seeded random mutations, a wrong
 * type under every known key, and the size limits. A decoder either returns a well-typed value or throws
 * `ProvError('malformed')` (4.00) — never another error, never a half-checked value.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { hex, toHex } from '../support/bytes.ts';
import { mutate, prng } from '../support/mutation.ts';
import { V } from '../support/vectors.ts';
import { ProvError } from '../../src/errors.ts';
import { MAX_CBOR_BYTES, asTag, decodeCbor, encodeCanonical } from '../../src/protocol/cbor.ts';
import { parseSign1 } from '../../src/protocol/cose.ts';
import { decodeClaims, decodeKeySet } from '../../src/protocol/cwt.ts';
import { MAX_TOKEN_BYTES, parseRefreshBody, parseRequestBody, parseResponse } from '../../src/protocol/messages.ts';

// ---------------------------------------------------------------------------------------------
// Fixtures

interface ValidCase {
  name: string;
  diag?: string;
  hex: string;
  expect: unknown;
  source?: string;
}
interface InvalidCase {
  name: string;
  diag?: string;
  hex: string;
  code: string;
}
interface FixtureFile {
  about: string;
  decoder: DecoderName;
  valid: ValidCase[];
  invalid: InvalidCase[];
}

const FIXTURE_DIR = new URL('../../fixtures/protocol/', import.meta.url);
const FIXTURES: Array<{ file: string; f: FixtureFile }> = readdirSync(FIXTURE_DIR)
  .filter((n) => n.endsWith('.json'))
  .sort()
  .map((file) => ({ file, f: JSON.parse(readFileSync(new URL(file, FIXTURE_DIR), 'utf8')) as FixtureFile }));

// ---------------------------------------------------------------------------------------------
// Decoders, their plain-JSON views (bytes as hex) and their type predicates

type DecoderName = 'parseSign1' | 'parseRequestBody' | 'parseRefreshBody' | 'decodeClaims' | 'decodeKeySet' | 'parseResponse' | 'decodeCbor';

/** Plain JSON view of a typed decoder result: bytes as hex, undefined members dropped. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return toHex(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, plain(x)]));
  }
  return v;
}

/** Typed JSON view of a generic CBOR value (see fixtures/protocol/cbor.json "about"). */
function typed(v: unknown): unknown {
  if (typeof v === 'bigint') return { bigint: v.toString() };
  if (v instanceof Uint8Array) return { bytes: toHex(v) };
  if (Array.isArray(v)) return v.map(typed);
  if (v instanceof Map) return { map: [...v].map(([k, x]) => [typed(k), typed(x)]) };
  const t = asTag(v);
  if (t) return { tag: t.tag, value: typed(t.value) };
  return v;
}

const isBytes = (v: unknown, min: number, max = min): boolean => v instanceof Uint8Array && v.length >= min && v.length <= max;
const isUint = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const ID_RE = /^[A-Za-z0-9._:-]{1,64}$/;

function onlyKeys(o: object, allowed: string[]): void {
  for (const k of Object.keys(o)) assert.ok(allowed.includes(k), `unexpected member ${k}`);
}

function checkCborValue(v: unknown, depth = 0): void {
  assert.ok(depth <= 40, 'nesting too deep');
  if (v === null || typeof v === 'boolean' || typeof v === 'string' || typeof v === 'bigint') return;
  if (typeof v === 'number') return assert.ok(Number.isSafeInteger(v), `non-integer number ${v}`);
  if (v instanceof Uint8Array) return;
  if (Array.isArray(v)) return v.forEach((x) => checkCborValue(x, depth + 1));
  if (v instanceof Map) {
    for (const [k, x] of v) {
      checkCborValue(k, depth + 1);
      checkCborValue(x, depth + 1);
    }
    return;
  }
  const t = asTag(v);
  assert.ok(t && t.tag === 18, `unexpected decoded value ${String(v)}`);
  checkCborValue(t.value, depth + 1);
}

const DECODERS: Record<DecoderName, { decode: (b: Uint8Array) => unknown; view: (v: never) => unknown; wellTyped: (v: never) => void }> = {
  parseSign1: {
    decode: (b) => parseSign1(b),
    view: (s: ReturnType<typeof parseSign1>) =>
      plain({ protected: s.protectedBytes, payload: s.payload, signature: s.signature, ...(s.kid ? { kid: s.kid } : {}) }),
    wellTyped: (s: ReturnType<typeof parseSign1>) => {
      onlyKeys(s, ['protectedBytes', 'payload', 'signature', 'kid']);
      assert.ok(s.protectedBytes instanceof Uint8Array && s.protectedBytes.length > 0);
      assert.ok(s.payload instanceof Uint8Array);
      assert.ok(isBytes(s.signature, 64));
      if (s.kid !== undefined) assert.ok(s.kid instanceof Uint8Array);
      const hdr = decodeCbor(s.protectedBytes);
      assert.ok(hdr instanceof Map && hdr.get(1) === -8);
    },
  },
  parseRequestBody: {
    decode: parseRequestBody,
    view: plain,
    wellTyped: (b: ReturnType<typeof parseRequestBody>) => {
      onlyKeys(b, ['id', 'pk', 'mac', 'nonce', 'type', 'xk', 'oob']);
      assert.ok(typeof b.id === 'string' && ID_RE.test(b.id));
      assert.ok(isBytes(b.pk, 32));
      assert.ok(b.type === 0 || b.type === 1 || b.type === 2);
      if (b.mac !== undefined) assert.ok(isBytes(b.mac, 6) || isBytes(b.mac, 8));
      if (b.nonce !== undefined) assert.ok(isBytes(b.nonce, 8, 32));
      if (b.xk !== undefined) assert.ok(isBytes(b.xk, 32));
      if (b.oob !== undefined) assert.ok(isBytes(b.oob, 32));
    },
  },
  parseRefreshBody: {
    decode: parseRefreshBody,
    view: plain,
    wellTyped: (b: ReturnType<typeof parseRefreshBody>) => {
      onlyKeys(b, ['id', 'nonce', 'xk', 'token']);
      assert.ok(typeof b.id === 'string' && ID_RE.test(b.id));
      assert.ok(isBytes(b.token, 1, MAX_TOKEN_BYTES));
      if (b.nonce !== undefined) assert.ok(isBytes(b.nonce, 8, 32));
      if (b.xk !== undefined) assert.ok(isBytes(b.xk, 32));
    },
  },
  decodeClaims: {
    decode: decodeClaims,
    view: plain,
    wellTyped: (c: ReturnType<typeof decodeClaims>) => {
      onlyKeys(c, ['iss', 'sub', 'aud', 'exp', 'iat', 'cti', 'cnf', 'role']);
      assert.ok(typeof c.iss === 'string' && typeof c.sub === 'string');
      assert.ok(isUint(c.exp) && isUint(c.iat));
      assert.ok(isBytes(c.cti, 8, 16));
      assert.ok(isBytes(c.cnf, 32));
      if (c.aud !== undefined) assert.equal(typeof c.aud, 'string');
      if (c.role !== undefined) assert.equal(typeof c.role, 'string');
    },
  },
  decodeKeySet: {
    decode: decodeKeySet,
    view: plain,
    wellTyped: (ks: ReturnType<typeof decodeKeySet>) => {
      assert.ok(Array.isArray(ks));
      for (const k of ks) {
        onlyKeys(k, ['kid', 'x']);
        assert.ok(k.kid instanceof Uint8Array);
        assert.ok(isBytes(k.x, 32));
      }
    },
  },
  parseResponse: {
    decode: parseResponse,
    view: plain,
    wellTyped: (r: ReturnType<typeof parseResponse>) => {
      onlyKeys(r, ['status', 'nonce', 'token', 'exp', 'retry', 'ttl', 'diag', 'sealed', 'hub', 'err']);
      if (r.status !== undefined) assert.ok(r.status === 0 || r.status === 1 || r.status === 2);
      if (r.nonce !== undefined) assert.ok(isBytes(r.nonce, 8, 32));
      if (r.token !== undefined) assert.ok(isBytes(r.token, 1, MAX_TOKEN_BYTES));
      for (const k of ['exp', 'retry', 'ttl', 'err'] as const) if (r[k] !== undefined) assert.ok(isUint(r[k]), k);
      for (const k of ['diag', 'hub'] as const) if (r[k] !== undefined) assert.equal(typeof r[k], 'string');
      if (r.sealed !== undefined) {
        assert.ok(isBytes(r.sealed.epk, 32) && isBytes(r.sealed.nonce, 24) && r.sealed.box instanceof Uint8Array);
      }
    },
  },
  decodeCbor: {
    decode: (b) => decodeCbor(b),
    view: typed,
    wellTyped: (v: unknown) => {
      assert.notEqual(v, undefined);
      checkCborValue(v);
    },
  },
};

/** Run `fn`; it must return, or throw ProvError 'malformed'. Anything else fails the test. */
function outcome(fn: () => unknown, label: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (!(e instanceof ProvError)) assert.fail(`${label}: threw ${(e as Error)?.constructor?.name} ${String(e)}`);
    assert.equal(e.code, 'malformed', `${label}: code`);
    return { ok: false };
  }
}

/** `fn` must throw ProvError with code 'malformed'. */
function assertMalformed(fn: () => unknown, label: string): void {
  const r = outcome(fn, label);
  assert.equal(r.ok, false, `${label}: was accepted`);
}

function sourceHex(source: string): string {
  const [file, path] = source.split('#');
  assert.equal(file, 'vectors/idprov-v1.json');
  return path!.split('.').reduce((o: Record<string, unknown>, k) => o[k] as Record<string, unknown>, V) as unknown as string;
}

// ---------------------------------------------------------------------------------------------
// Raw CBOR building (hex), independent of encodeCanonical so wrong types and floats can be spliced in

function head(major: number, n: number): string {
  const m = major << 5;
  const h = (x: number, bytes: number) => x.toString(16).padStart(bytes * 2, '0');
  if (n < 24) return h(m | n, 1);
  if (n < 0x100) return h(m | 24, 1) + h(n, 1);
  if (n < 0x10000) return h(m | 25, 1) + h(n, 2);
  return h(m | 26, 1) + h(n, 4);
}
const u = (n: number): string => (n >= 0 ? head(0, n) : head(1, -1 - n));
const bs = (h: string): string => head(2, h.length / 2) + h;
const ts = (s: string): string => {
  const h = Buffer.from(s, 'utf8').toString('hex');
  return head(3, h.length / 2) + h;
};
const ar = (...xs: string[]): string => head(4, xs.length) + xs.join('');
const mp = (...kv: Array<[string, string]>): string => head(5, kv.length) + kv.map(([k, v]) => k + v).join('');
const bytesOf = (len: number, fill = 0xa5): string => Buffer.alloc(len, fill).toString('hex');

/** A value of each CBOR kind, to put where another kind belongs. */
type Kind = 'uint' | 'nint' | 'bstr' | 'tstr' | 'array' | 'map' | 'simple' | 'other';
const SAMPLES: Array<{ kind: Kind; name: string; hex: string }> = [
  { kind: 'uint', name: 'an unsigned integer', hex: '01' },
  { kind: 'nint', name: 'a negative integer', hex: '20' },
  { kind: 'bstr', name: 'a byte string', hex: bs(bytesOf(32)) },
  { kind: 'tstr', name: 'a text string', hex: ts('dev-1') },
  { kind: 'array', name: 'an array', hex: '80' },
  { kind: 'map', name: 'a map', hex: 'a0' },
  { kind: 'simple', name: 'false', hex: 'f4' },
  { kind: 'simple', name: 'true', hex: 'f5' },
  { kind: 'simple', name: 'null', hex: 'f6' },
  { kind: 'other', name: 'undefined', hex: 'f7' },
  { kind: 'other', name: 'the float 1.0', hex: 'fb3ff0000000000000' },
  { kind: 'other', name: 'the half float 0.0', hex: 'f90000' },
  { kind: 'other', name: 'a bignum (tag 2)', hex: 'c24101' },
  { kind: 'other', name: 'the decimal fraction 4([0, 1])', hex: 'c4820001' },
  { kind: 'other', name: 'a typed byte array (tag 64)', hex: 'd840' + bs(bytesOf(32)) },
  { kind: 'other', name: 'a tagged item (tag 18)', hex: 'd2' + bs(bytesOf(32)) },
];

interface Field {
  /** Where the value sits, for the test name. */
  at: string;
  kind: Kind;
  /** The whole input with this field's value replaced by `rep` hex. */
  with: (rep: string) => string;
  /** The field's good value. */
  good: string;
}

/** Fields of a map built from `entries`, each replaceable. `wrap` embeds the map in a larger input. */
function mapFields(label: string, entries: Array<[string, Kind, string, string]>, wrap: (m: string) => string = (m) => m): Field[] {
  return entries.map(([at, kind, keyHex, good]) => ({
    at: `${label} ${at}`,
    kind,
    good,
    with: (rep: string) => wrap(mp(...entries.map(([, , k, v]): [string, string] => [k, k === keyHex ? rep : v]))),
  }));
}

const PK = V.device.ed25519_pk as string;
const XK = V.device.x25519_pk as string;
const MAC = V.device.mac as string;
const N24 = bytesOf(24, 0x30);
const SIG = V.request.signature as string;
const TOKEN = V.token.cwt as string;
const KID = V.server.kid as string;
const SRV = V.server.ed25519_pk as string;

const COSE_KEY: Array<[string, Kind, string, string]> = [
  ['kty (1)', 'uint', u(1), u(1)],
  ['crv (-1)', 'uint', u(-1), u(6)],
  ['x (-2)', 'bstr', u(-2), bs(PK)],
];
const CLAIMS: Array<[string, Kind, string, string]> = [
  ['iss (1)', 'tstr', u(1), ts('idprov')],
  ['sub (2)', 'tstr', u(2), ts('dev-1')],
  ['aud (3)', 'tstr', u(3), ts('hub')],
  ['exp (4)', 'uint', u(4), u(1767229200)],
  ['iat (6)', 'uint', u(6), u(1767225600)],
  ['cti (7)', 'bstr', u(7), bs('1011121314151617')],
  ['cnf (8)', 'map', u(8), mp([u(1), mp(...COSE_KEY.map(([, , k, v]): [string, string] => [k, v]))])],
  ['"role"', 'tstr', ts('role'), ts('service')],
];
const claimsWith = (cnf: string) => mp(...CLAIMS.map(([, , k, v]): [string, string] => [k, k === u(8) ? cnf : v]));

const KNOWN_FIELDS: Record<Exclude<DecoderName, 'decodeCbor'>, Field[]> = {
  parseRequestBody: mapFields('request key', [
    ['1 (id)', 'tstr', u(1), ts('dev-1')],
    ['2 (pk)', 'bstr', u(2), bs(PK)],
    ['3 (mac)', 'bstr', u(3), bs(MAC)],
    ['4 (nonce)', 'bstr', u(4), bs(N24)],
    ['5 (type)', 'uint', u(5), u(1)],
    ['6 (xk)', 'bstr', u(6), bs(XK)],
    ['7 (oob)', 'bstr', u(7), bs(bytesOf(32, 7))],
  ]),
  parseRefreshBody: mapFields('refresh key', [
    ['1 (id)', 'tstr', u(1), ts('dev-1')],
    ['4 (nonce)', 'bstr', u(4), bs(N24)],
    ['6 (xk)', 'bstr', u(6), bs(XK)],
    ['8 (token)', 'bstr', u(8), bs(TOKEN)],
  ]),
  parseSign1: [
    ...(['protected', 'unprotected', 'payload', 'signature'] as const).map((at, i): Field => {
      const parts = [bs('a10127'), 'a0', bs(V.request.body), bs(SIG)];
      const kinds: Kind[] = ['bstr', 'map', 'bstr', 'bstr'];
      return { at: `COSE_Sign1 ${at} (element ${i})`, kind: kinds[i]!, good: parts[i]!, with: (rep) => ar(...parts.map((p, j) => (j === i ? rep : p))) };
    }),
    ...mapFields(
      'protected header',
      [
        ['alg (1)', 'nint', u(1), u(-8)],
        ['kid (4)', 'bstr', u(4), bs(KID)],
      ],
      (m) => ar(bs(m), 'a0', bs(V.request.body), bs(SIG)),
    ),
  ],
  decodeClaims: [...mapFields('claim', CLAIMS), ...mapFields('cnf COSE_Key', COSE_KEY, (m) => claimsWith(mp([u(1), m])))],
  decodeKeySet: mapFields(
    'COSE_KeySet entry',
    [
      ['kty (1)', 'uint', u(1), u(1)],
      ['kid (2)', 'bstr', u(2), bs(KID)],
      ['crv (-1)', 'uint', u(-1), u(6)],
      ['x (-2)', 'bstr', u(-2), bs(SRV)],
    ],
    (m) => ar(m),
  ),
  parseResponse: mapFields('response key', [
    ['0 (status)', 'uint', u(0), u(0)],
    ['4 (nonce)', 'bstr', u(4), bs(N24)],
    ['8 (token)', 'bstr', u(8), bs(TOKEN)],
    ['9 (exp)', 'uint', u(9), u(1767229200)],
    ['10 (retry)', 'uint', u(10), u(60)],
    ['11 (ttl)', 'uint', u(11), u(3600)],
    ['12 (diag)', 'tstr', u(12), ts('ok')],
    ['13 (sealed)', 'array', u(13), ar(bs(bytesOf(32)), bs(N24), bs(bytesOf(40)))],
    ['14 (hub)', 'tstr', u(14), ts('coaps://hub')],
    ['15 (err)', 'uint', u(15), u(1)],
  ]),
};

// ---------------------------------------------------------------------------------------------

describe('wire decoders (docs/spec/idprov-coap-v1.md §2, §4, §5)', () => {
  it('has a golden fixture file for every decoder', () => {
    const covered = new Set(FIXTURES.map(({ f }) => f.decoder));
    assert.deepEqual([...covered].sort(), Object.keys(DECODERS).sort());
    for (const { file, f } of FIXTURES) {
      assert.ok(f.valid.length > 0 && f.invalid.length > 0, file);
      for (const c of f.invalid) assert.equal(c.code, 'malformed', `${file}: ${c.name}`);
    }
  });

  it('covers tagged and untagged COSE_Sign1 envelopes in the golden vectors', () => {
    const sign1 = FIXTURES.find(({ f }) => f.decoder === 'parseSign1')!.f;
    assert.ok(sign1.valid.some((c) => c.hex.startsWith('d284')));
    assert.ok(sign1.valid.some((c) => c.hex.startsWith('84')));
  });

  for (const { file, f } of FIXTURES) {
    const d = DECODERS[f.decoder];
    describe(`${f.decoder} golden vectors (fixtures/protocol/${file})`, () => {
      for (const c of f.valid) {
        it(`decodes ${c.name}`, () => {
          if (c.source) assert.equal(c.hex, sourceHex(c.source), `fixture hex differs from ${c.source}`);
          const v = d.decode(hex(c.hex));
          d.wellTyped(v as never);
          assert.deepEqual(d.view(v as never), c.expect);
        });
      }
      for (const c of f.invalid) {
        it(`refuses ${c.name} as malformed`, () => {
          assertMalformed(() => d.decode(hex(c.hex)), c.name);
        });
      }
    });
  }

  describe('truncation', () => {
    for (const name of Object.keys(DECODERS) as DecoderName[]) {
      it(`refuses every strict prefix of every valid ${name} input as malformed`, () => {
        let n = 0;
        for (const { f } of FIXTURES.filter((x) => x.f.decoder === name)) {
          for (const c of f.valid) {
            const full = hex(c.hex);
            for (let len = 0; len < full.length; len++) {
              assertMalformed(() => DECODERS[name].decode(full.subarray(0, len)), `${c.name} cut to ${len} of ${full.length} bytes`);
              // A copy too: the prefix must not read past its own end into the rest of the buffer.
              assertMalformed(() => DECODERS[name].decode(Buffer.from(full.subarray(0, len))), `${c.name} copied, cut to ${len}`);
              n++;
            }
          }
        }
        assert.ok(n > 0);
      });
    }
  });

  describe('mutation', () => {
    const PER_DECODER = 4000;
    (Object.keys(DECODERS) as DecoderName[]).forEach((name, seedBase) => {
      it(`either decodes ${PER_DECODER} seeded random mutations of ${name} inputs to well-typed values or refuses them as malformed`, () => {
        const inputs = FIXTURES.filter((x) => x.f.decoder === name).flatMap(({ f }) => f.valid.map((c) => hex(c.hex)));
        const rnd = prng(0x1d9f0 + seedBase);
        let accepted = 0;
        let refused = 0;
        for (let i = 0; i < PER_DECODER; i++) {
          const input = inputs[i % inputs.length]!;
          const m = mutate(input, rnd);
          const label = `${name} mutation #${i}: ${toHex(m)}`;
          const r = outcome(() => DECODERS[name].decode(m), label);
          if (r.ok) {
            accepted++;
            try {
              DECODERS[name].wellTyped(r.value as never);
            } catch (e) {
              assert.fail(`${label}: decoded to a badly typed value: ${(e as Error).message}`);
            }
          } else refused++;
        }
        // Both outcomes must occur, or the mutations test nothing.
        assert.ok(accepted > 0, `${name}: no mutation decoded`);
        assert.ok(refused > 0, `${name}: no mutation was refused`);
      });
    });
  });

  describe('a known key with the wrong type is malformed (docs/spec/idprov-coap-v1.md §2)', () => {
    for (const [name, fields] of Object.entries(KNOWN_FIELDS) as Array<[Exclude<DecoderName, 'decodeCbor'>, Field[]]>) {
      const decode = DECODERS[name].decode;
      for (const field of fields) {
        it(`${name} refuses every other CBOR type under ${field.at}`, () => {
          const good = outcome(() => decode(hex(field.with(field.good))), `${field.at} with its good value`);
          assert.ok(good.ok, `${field.at}: the unmodified input must decode`);
          const wrong = SAMPLES.filter((s) => s.kind !== field.kind);
          for (const s of wrong) assertMalformed(() => decode(hex(field.with(s.hex))), `${field.at} = ${s.name}`);
        });
      }
    }
  });

  describe('size limits', () => {
    const req = (over: Record<number, unknown>): Buffer => {
      const m = new Map<number, never>([[1, 'dev-1' as never], [2, hex(PK) as never]]);
      for (const [k, v] of Object.entries(over)) m.set(Number(k), v as never);
      return encodeCanonical(m);
    };
    const refresh = (over: Record<number, unknown>): Buffer => {
      const m = new Map<number, never>([[1, 'dev-1' as never], [8, hex(TOKEN) as never]]);
      for (const [k, v] of Object.entries(over)) m.set(Number(k), v as never);
      return encodeCanonical(m);
    };

    it('accepts device IDs of 1 and 64 characters and refuses 0 and 65', () => {
      for (const decode of [(id: string) => parseRequestBody(req({ 1: id })), (id: string) => parseRefreshBody(refresh({ 1: id }))]) {
        assert.equal(decode('a').id, 'a');
        assert.equal(decode('a'.repeat(64)).id, 'a'.repeat(64));
        assertMalformed(() => decode(''), 'empty id');
        assertMalformed(() => decode('a'.repeat(65)), '65-character id');
      }
    });

    it('accepts exactly the characters [A-Za-z0-9._:-] in device IDs', () => {
      const allowed = new Set('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-');
      for (let c = 0; c < 0x180; c++) {
        const ch = String.fromCodePoint(c);
        const id = `dev${ch}1`;
        if (allowed.has(ch)) assert.equal(parseRequestBody(req({ 1: id })).id, id);
        else assertMalformed(() => parseRequestBody(req({ 1: id })), `id with U+${c.toString(16).padStart(4, '0')}`);
      }
      assertMalformed(() => parseRequestBody(req({ 1: 'dev-1\n' })), 'id with a trailing newline');
      assertMalformed(() => parseRequestBody(req({ 1: 'dev-\u{1F600}' })), 'id with an emoji');
    });

    it('accepts nonces of 8 to 32 bytes and refuses 7 and 33 (request, refresh, response)', () => {
      const decoders = [(n: Buffer) => parseRequestBody(req({ 4: n })).nonce, (n: Buffer) => parseRefreshBody(refresh({ 4: n })).nonce, (n: Buffer) => parseResponse(encodeCanonical(new Map([[4, n]]))).nonce];
      for (const decode of decoders) {
        for (const len of [8, 24, 32]) assert.equal(decode(Buffer.alloc(len, 1))!.length, len);
        for (const len of [0, 7, 33]) assertMalformed(() => decode(Buffer.alloc(len, 1)), `nonce of ${len} bytes`);
      }
    });

    it('accepts MACs of 6 and 8 bytes and refuses 5, 7 and 9', () => {
      for (const len of [6, 8]) assert.equal(parseRequestBody(req({ 3: Buffer.alloc(len, 2) })).mac!.length, len);
      for (const len of [0, 5, 7, 9]) assertMalformed(() => parseRequestBody(req({ 3: Buffer.alloc(len, 2) })), `mac of ${len} bytes`);
    });

    it('accepts 32-byte pk, xk and oob and refuses 31 and 33 bytes', () => {
      for (const key of [2, 6, 7]) {
        assert.ok(parseRequestBody(req({ [key]: Buffer.alloc(32, 3) })));
        for (const len of [31, 33]) assertMalformed(() => parseRequestBody(req({ [key]: Buffer.alloc(len, 3) })), `key ${key} of ${len} bytes`);
      }
      assert.ok(parseRefreshBody(refresh({ 6: Buffer.alloc(32, 3) })).xk);
      for (const len of [31, 33]) assertMalformed(() => parseRefreshBody(refresh({ 6: Buffer.alloc(len, 3) })), `refresh xk of ${len} bytes`);
    });

    it(`accepts tokens up to ${MAX_TOKEN_BYTES} bytes and refuses longer ones (refresh, response)`, () => {
      assert.equal(MAX_TOKEN_BYTES, 512);
      assert.equal(parseRefreshBody(refresh({ 8: Buffer.alloc(512, 4) })).token.length, 512);
      assertMalformed(() => parseRefreshBody(refresh({ 8: Buffer.alloc(513, 4) })), 'refresh token of 513 bytes');
      assert.equal(parseResponse(encodeCanonical(new Map([[8, Buffer.alloc(512, 4)]]))).token!.length, 512);
      assertMalformed(() => parseResponse(encodeCanonical(new Map([[8, Buffer.alloc(513, 4)]]))), 'response token of 513 bytes');
    });

    it('accepts cti of 8 to 16 bytes in token claims and refuses 7 and 17', () => {
      const claims = (cti: string) => hex(mp(...CLAIMS.map(([, , k, v]): [string, string] => [k, k === u(7) ? bs(cti) : v])));
      for (const len of [8, 12, 16]) assert.equal(decodeClaims(claims(bytesOf(len))).cti.length, len);
      for (const len of [0, 7, 17]) assertMalformed(() => decodeClaims(claims(bytesOf(len))), `cti of ${len} bytes`);
    });

    it(`decodes items of up to ${MAX_CBOR_BYTES} bytes and refuses longer input before parsing it`, () => {
      const item = (total: number) => Buffer.concat([hex('59' + (total - 3).toString(16).padStart(4, '0')), Buffer.alloc(total - 3, 9)]);
      assert.equal((decodeCbor(item(MAX_CBOR_BYTES)) as Uint8Array).length, MAX_CBOR_BYTES - 3);
      assertMalformed(() => decodeCbor(item(MAX_CBOR_BYTES + 1)), `${MAX_CBOR_BYTES + 1} bytes`);
      assertMalformed(() => decodeCbor(new Uint8Array(0)), 'empty input');
    });
  });

  it('decodes or refuses as malformed every one-byte input (all decoders) and every two-byte input (decodeCbor)', () => {
    for (let i = 0; i < 0x100; i++) {
      for (const name of Object.keys(DECODERS) as DecoderName[]) {
        const r = outcome(() => DECODERS[name].decode(Uint8Array.of(i)), `${name}(${i.toString(16)})`);
        if (r.ok) DECODERS[name].wellTyped(r.value as never);
      }
    }
    const b = Buffer.alloc(2);
    for (let i = 0; i < 0x10000; i++) {
      b.writeUInt16BE(i);
      const r = outcome(() => decodeCbor(b), `decodeCbor(${toHex(b)})`);
      if (r.ok) DECODERS.decodeCbor.wellTyped(r.value as never);
    }
  });
});
