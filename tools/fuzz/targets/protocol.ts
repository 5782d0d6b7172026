/**
 * Protocol decoders: CBOR (decodeCbor), COSE_Sign1 (parseSign1), CWT claims and key sets
 * (decodeClaims, decodeKeySet), and the request / refresh / response bodies. Oracle: each either
 * returns or throws ProvError('malformed'); nothing else escapes. Where an encoder exists, what was
 * decoded re-encodes and decodes to the same value; and CBOR maps keep every pair they were sent with
 * (a map that came back smaller held two keys of equal value that the duplicate check missed).
 */
import { isProvError } from '../../../src/errors.ts';
import { CborTagged, MAX_CBOR_BYTES, asTag, decodeCbor, encodeCanonical, type CborValue } from '../../../src/protocol/cbor.ts';
import { encodeSign1, parseSign1 } from '../../../src/protocol/cose.ts';
import { decodeClaims, decodeKeySet, encodeClaims, encodeKeySet } from '../../../src/protocol/cwt.ts';
import { encodeRefreshBody, encodeRequestBody, encodeResponse, parseRefreshBody, parseRequestBody, parseResponse } from '../../../src/protocol/messages.ts';
import { cborSpans } from '../cbor-items.ts';
import { check, tokens, type Target } from '../target.ts';
import { same } from './compare.ts';
import { hexFrom, protocolFixtures } from './fixtures.ts';

/** Run `f`; a ProvError('malformed') means "refused" (undefined), anything else propagates. */
function orMalformed<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch (e) {
    if (isProvError(e, 'malformed')) return undefined;
    throw e;
  }
}

/** A decoded value as the encoder takes it. */
function toCbor(v: unknown): CborValue {
  if (Array.isArray(v)) return v.map(toCbor);
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [toCbor(k) as number | string, toCbor(x)]));
  const t = asTag(v);
  if (t) return new CborTagged(t.tag, toCbor(t.value));
  return v as CborValue;
}

/** Map pairs in a decoded value. */
function decodedPairs(v: unknown): number {
  if (Array.isArray(v)) return v.reduce((n: number, x) => n + decodedPairs(x), 0);
  if (v instanceof Map) {
    let n = v.size;
    for (const [k, x] of v) n += decodedPairs(k) + decodedPairs(x);
    return n;
  }
  const t = asTag(v);
  return t ? decodedPairs(t.value) : 0;
}

/** Map pairs written in the input (an independent count over the heads). */
function writtenPairs(b: Buffer): number {
  const spans = cborSpans(b, 1 << 16);
  const at = new Map(spans.map((x) => [x.start, x]));
  let n = 0;
  for (const s of spans) {
    if (s.major !== 5) continue;
    // The children follow one another from the end of the head.
    let kids = 0;
    for (let c = at.get(s.headEnd); c && c.end <= s.end; c = at.get(c.end)) kids++;
    n += kids >> 1;
  }
  return n;
}

const CBOR_DICT = tokens([0xa0], [0xa1], [0xa2], [0xbf], [0x80], [0x81], [0x9f], [0xff], [0x18, 0x18], [0x19, 0x00, 0x01], [0x1a, 0, 0, 0, 1], [0x1b, 0, 0, 0, 0, 0, 0, 0, 1], [0x20], [0x38, 0x00], [0x40], [0x58, 0x20], [0x60], [0x61, 0x61], [0x5f], [0x7f], [0xd8, 0x12], [0xd2], [0xc1], [0xd9, 0xd9, 0xf7], [0xf4], [0xf5], [0xf6], [0xf7], [0xf9, 0, 0], [0xfa, 0, 0, 0, 0], [0xfb, 0, 0, 0, 0, 0, 0, 0, 0], [0x27], [0x21], [0x01], [0x02], [0x04], [0x08], [0x0a], [0x0f], [0x61, 0xff], [0x62, 0xc0, 0xaf], [0x43, 0xa1, 0x01, 0x27]);

const allProtocolHex = (): Buffer[] => [...hexFrom(...protocolFixtures()), ...hexFrom('vectors/idprov-v1.json')];

const cbor: Target = {
  name: 'cbor',
  about: 'decodeCbor: only ProvError(malformed); decode(encode(decode(x))) is stable; maps keep every written pair',
  watch: ['/src/protocol/cbor.ts', '/cbor-x/decode.js'],
  maxLen: MAX_CBOR_BYTES + 16,
  dictionary: CBOR_DICT,
  cbor: true,
  seeds: allProtocolHex,
  run(input) {
    const v = orMalformed(() => decodeCbor(input));
    if (v === undefined) return;
    check(decodedPairs(v) === writtenPairs(input), 'a decoded map has fewer entries than the input wrote: two keys of equal value were accepted');
    const enc = encodeCanonical(toCbor(v));
    if (enc.length > MAX_CBOR_BYTES) return;
    const again = orMalformed(() => decodeCbor(enc));
    check(again !== undefined, 'the canonical encoding of an accepted item is refused');
    check(same(v, again), 'decode(encode(decode(x))) differs from decode(x)');
    check(encodeCanonical(toCbor(again)).equals(enc), 'canonical encoding is not stable');
  },
};

const cose: Target = {
  name: 'cose',
  about: 'parseSign1: only ProvError(malformed); parse(encodeSign1(parse(x))) is the same envelope',
  watch: ['/src/protocol/cose.ts', '/src/protocol/cbor.ts'],
  maxLen: 1100,
  dictionary: CBOR_DICT,
  cbor: true,
  seeds: () => [...hexFrom('protocol/sign1.json'), ...hexFrom('vectors/idprov-v1.json')],
  run(input) {
    const s = orMalformed(() => parseSign1(input));
    if (!s) return;
    for (const tagged of [false, true]) {
      const back = orMalformed(() => parseSign1(encodeSign1(s.protectedBytes, s.payload, s.signature, tagged)));
      check(back !== undefined && same(s, back), `re-encoded COSE_Sign1 (tagged: ${tagged}) parses differently`);
    }
  },
};

const cwt: Target = {
  name: 'cwt',
  about: 'decodeClaims and decodeKeySet: only ProvError(malformed); decode(encode(decode(x))) is the same',
  watch: ['/src/protocol/cwt.ts', '/src/protocol/cbor.ts'],
  maxLen: 1100,
  dictionary: [...CBOR_DICT, ...tokens('role', [0x64, 0x72, 0x6f, 0x6c, 0x65], [0x20, 0x06], [0x21, 0x58, 0x20])],
  cbor: true,
  seeds: () => [...hexFrom('protocol/claims.json', 'protocol/keyset.json'), ...hexFrom('vectors/idprov-v1.json')],
  run(input) {
    const c = orMalformed(() => decodeClaims(input));
    if (c) {
      const back = orMalformed(() => decodeClaims(encodeClaims(c)));
      check(back !== undefined && same(c, back), 're-encoded claims decode differently');
    }
    const k = orMalformed(() => decodeKeySet(input));
    if (k) {
      const back = orMalformed(() => decodeKeySet(encodeKeySet(k)));
      check(back !== undefined && same(k, back), 're-encoded key set decodes differently');
    }
  },
};

const messages: Target = {
  name: 'messages',
  about: 'parseRequestBody, parseRefreshBody, parseResponse: only ProvError(malformed); parse(encode(parse(x))) is the same',
  watch: ['/src/protocol/messages.ts', '/src/protocol/cbor.ts'],
  maxLen: 1100,
  dictionary: [...CBOR_DICT, ...tokens([0x01, 0x61, 0x61], [0x02, 0x58, 0x20], [0x03, 0x46], [0x05, 0x02], [0x06, 0x58, 0x20], [0x07, 0x58, 0x20], [0x08, 0x59, 0x02, 0x00], [0x0b, 0xa3])],
  cbor: true,
  seeds: () => [...hexFrom('protocol/request-body.json', 'protocol/refresh-body.json', 'protocol/response.json'), ...hexFrom('vectors/idprov-v1.json')],
  run(input) {
    const req = orMalformed(() => parseRequestBody(input));
    if (req) check(same(req, orMalformed(() => parseRequestBody(encodeRequestBody(req)))), 're-encoded request body parses differently');
    const ref = orMalformed(() => parseRefreshBody(input));
    if (ref) check(same(ref, orMalformed(() => parseRefreshBody(encodeRefreshBody(ref)))), 're-encoded refresh body parses differently');
    const res = orMalformed(() => parseResponse(input));
    if (res) check(same(res, orMalformed(() => parseResponse(encodeResponse(res)))), 're-encoded response parses differently');
  },
};

export const PROTOCOL_TARGETS = [cbor, cose, cwt, messages];
