/**
 * Transport parsers: the CoAP message decoder and the DTLS record, handshake-fragment, ClientHello,
 * ClientKeyExchange, extension and alert parsers. None of them may throw (they report malformed input
 * by their return value); what they accept re-encodes with the writers of the same module to the
 * bytes that were read.
 */
import { DECODE_FORMAT_ERROR, DECODE_IGNORE, DECODE_OK, DecodedMessage, MAX_URI_OPTIONS, MessageWriter, OPT, decodeMessage, pathOf, queryOf } from '../../../src/transport/coap/codec.ts';
import { innerPlaintext, splitInnerPlaintext } from '../../../src/transport/dtls/crypto.ts';
import {
  CT,
  DTLS12,
  EXT,
  HT,
  RECORD_HEADER,
  extension,
  handshakeFragment,
  parseAlert,
  parseClientHello,
  parseClientKeyExchange,
  parseHandshakeFragments,
  parseRecords,
  parseU16List,
  parseVec8Exact,
  u16,
  vec16,
  vec8,
  writeCidRecord,
  writeRecord,
} from '../../../src/transport/dtls/wire.ts';
import { clientHelloBody, clientHelloDatagram } from '../../dtls-peers/client.ts';
import { check, tokens, unhex, type Target } from '../target.ts';
import { fixture, hexFrom } from './fixtures.ts';

const scratch = new DecodedMessage();
const writer = new MessageWriter(70_000);

/** The fields of a decoded request the engine acts on. */
function requestView(buf: Buffer, m: DecodedMessage): string {
  return JSON.stringify({
    type: m.type,
    code: m.code,
    mid: m.messageId,
    token: buf.toString('hex', 4, 4 + m.tokenLength),
    path: m.pathCount > 0 ? Array.from({ length: m.pathCount }, (_, k) => buf.toString('hex', m.pathOff[k]!, m.pathOff[k]! + m.pathLen[k]!)) : [],
    query: Array.from({ length: m.queryCount }, (_, k) => buf.toString('hex', m.queryOff[k]!, m.queryOff[k]! + m.queryLen[k]!)),
    cf: m.contentFormat,
    accept: m.accept,
    block2: m.block2,
    block1: m.block1,
    size2: m.size2,
    payload: buf.toString('hex', m.payloadStart),
  });
}

const coap: Target = {
  name: 'coap',
  about: 'decodeMessage never throws and returns OK/IGNORE/FORMAT_ERROR with offsets inside the datagram; an accepted request rebuilt with MessageWriter decodes to the same fields',
  watch: ['/src/transport/coap/codec.ts'],
  maxLen: 1400,
  dictionary: tokens([0x40], [0x44], [0x50], [0x60], [0x70], [0x01], [0x02], [0x45], [0xb6], [0xbd, 0x00], [0xd1, 0x0e], [0xe0, 0x00, 0x00], [0xff], [0x11, 0x12], [0x12, 0x00, 0x12], [0x21, 0x3c], [0x61, 0x06], [0xc1, 0x06], [0xd1, 0x0a, 0x02], [0xd2, 0x0f], 'idprov', 'request', 'refresh', 'keys', '.well-known', 'core', 'rt=idprov.request', [0x0f], [0xed, 0xa0, 0x80], [0xc0, 0xaf]),
  cbor: false,
  seeds() {
    const v = fixture('coap/engine-vectors.json') as { vectors: Array<{ request: string; response?: string }> };
    const out = v.vectors.flatMap((x) => [unhex(x.request), ...(x.response ? [unhex(x.response)] : [])]);
    const sign1 = hexFrom('vectors/idprov-v1.json').sort((a, b) => b.length - a.length)[0]!;
    const post = (path: string[], payload: Buffer, cf = 18): Buffer => {
      const w = new MessageWriter(2048).begin(0, 2, 0x1234, Buffer.from('a1b2c3d4', 'hex'));
      for (const p of path) w.option(OPT.URI_PATH, Buffer.from(p));
      w.optionUint(OPT.CONTENT_FORMAT, cf);
      return w.payload(payload).finish();
    };
    const get = (path: string[], query: string[] = [], block2 = -1): Buffer => {
      const w = new MessageWriter(2048).begin(0, 1, 0x2345, Buffer.from('07', 'hex'));
      for (const p of path) w.option(OPT.URI_PATH, Buffer.from(p));
      for (const q of query) w.option(OPT.URI_QUERY, Buffer.from(q));
      if (block2 >= 0) w.optionUint(OPT.BLOCK2, block2);
      return w.finish();
    };
    out.push(post(['idprov', 'request'], sign1), post(['idprov', 'refresh'], sign1.subarray(0, 40)), get(['.well-known', 'core'], ['rt=idprov.request']), get(['idprov', 'keys'], [], 0x12), get(['idprov', 'keys']));
    return out;
  },
  run(input) {
    const m = scratch;
    const r = decodeMessage(input, m);
    check(r === DECODE_OK || r === DECODE_IGNORE || r === DECODE_FORMAT_ERROR, `decodeMessage returned ${r}`);
    if (r !== DECODE_OK) return;
    check(m.payloadStart <= input.length && m.tokenLength <= 8, 'payload or token outside the datagram');
    if (m.code === 0 || m.code >> 5 !== 0) return;
    check(m.pathCount <= MAX_URI_OPTIONS && m.queryCount <= MAX_URI_OPTIONS, 'more Uri options than MAX_URI_OPTIONS recorded');
    for (let k = 0; k < m.pathCount; k++) check(m.pathOff[k]! + m.pathLen[k]! <= input.length, 'Uri-Path beyond the datagram');
    for (let k = 0; k < m.queryCount; k++) check(m.queryOff[k]! + m.queryLen[k]! <= input.length, 'Uri-Query beyond the datagram');
    pathOf(input, m);
    queryOf(input, m);
    if (m.badCritical || m.badRequest || m.proxy || m.pathOverflow || m.queryOverflow) return;
    const before = requestView(input, m);
    const w = writer.begin(m.type, m.code, m.messageId, input.subarray(4, 4 + m.tokenLength));
    for (let k = 0; k < m.pathCount; k++) w.option(OPT.URI_PATH, input.subarray(m.pathOff[k]!, m.pathOff[k]! + m.pathLen[k]!));
    if (m.contentFormat >= 0) w.optionUint(OPT.CONTENT_FORMAT, m.contentFormat);
    for (let k = 0; k < m.queryCount; k++) w.option(OPT.URI_QUERY, input.subarray(m.queryOff[k]!, m.queryOff[k]! + m.queryLen[k]!));
    if (m.accept >= 0) w.optionUint(OPT.ACCEPT, m.accept);
    if (m.block2 >= 0) w.optionUint(OPT.BLOCK2, m.block2);
    if (m.block1 >= 0) w.optionUint(OPT.BLOCK1, m.block1);
    if (m.size2) w.optionUint(OPT.SIZE2, 0);
    const again = w.payload(input, m.payloadStart).finish();
    check(decodeMessage(again, m) === DECODE_OK, 'a rebuilt request does not decode');
    check(requestView(again, m) === before, 'a rebuilt request decodes to other fields');
  },
};

/** A handshake fragment header + body, as parseHandshakeFragments read it, rebuilt with handshakeFragment. */
function rebuildFragment(f: { msgType: number; length: number; msgSeq: number; fragOffset: number; fragLength: number; body: Buffer }): Buffer {
  const full = Buffer.alloc(f.length);
  f.body.copy(full, f.fragOffset);
  return handshakeFragment(f.msgType, f.msgSeq, full, f.fragOffset, f.fragLength);
}

/** The parsers of one complete handshake message body, by type. */
function handshakeBody(msgType: number, body: Buffer): void {
  if (msgType === HT.clientHello) helloOracle(body);
  if (msgType === HT.clientKeyExchange) {
    parseClientKeyExchange(body, 'psk');
    parseClientKeyExchange(body, 'ecdhe');
  }
}

function helloOracle(body: Buffer): void {
  const h = parseClientHello(body);
  if (!h) return;
  for (const [type, data] of h.extensions) {
    if (type === EXT.supportedGroups || type === EXT.signatureAlgorithms) parseU16List(data);
    if (type === EXT.ecPointFormats || type === EXT.connectionId || type === EXT.renegotiationInfo) parseVec8Exact(data);
  }
  const head = Buffer.concat([u16(h.version), h.random, vec8(h.sessionId), vec8(h.cookie), vec16(Buffer.concat(h.suites.map(u16))), vec8(h.compressions)]);
  const exts = Buffer.concat([...h.extensions].map(([t, d]) => extension(t, d)));
  check(head.equals(body) || Buffer.concat([head, vec16(exts)]).equals(body), 'a ClientHello rebuilt from its parts differs from the input');
  check(Buffer.concat(h.cookieInput).equals(Buffer.concat([head.subarray(0, 35 + h.sessionId.length), head.subarray(35 + h.sessionId.length + 1 + h.cookie.length)])), 'the cookie input is not the hello without its cookie');
}

const random = Buffer.alloc(32, 0x5a);
const helloSeeds = (): Buffer[] => [
  clientHelloBody({ random, suites: [0xc0a8] }),
  clientHelloBody({ random, cookie: Buffer.alloc(32, 3), suites: [0xc0a8, 0xc0ae, 0xc02b], cid: Buffer.alloc(0) }),
  clientHelloBody({ random, cookie: Buffer.alloc(16, 9), suites: [0xc0ae], ems: false, cid: Buffer.alloc(8, 1) }),
];

const dtlsRecords: Target = {
  name: 'dtls-records',
  about: 'parseRecords and parseHandshakeFragments never throw; records and fragments they return re-encode to the bytes read',
  watch: ['/src/transport/dtls/wire.ts'],
  maxLen: 1500,
  dictionary: tokens([0x16, 0xfe, 0xfd], [0x14, 0xfe, 0xfd], [0x15, 0xfe, 0xfd], [0x17, 0xfe, 0xfd], [0x19, 0xfe, 0xfd], [0xfe, 0xff], [0x00, 0x01], [0x01, 0x00, 0x00], [0x10], [0x00, 0x00, 0x00, 0x00, 0x00, 0x00], [0x02, 0x28], [0x01], [0x40, 0x00], [0x48, 0x00]),
  cbor: false,
  seeds() {
    const hello = clientHelloDatagram({ random, suites: [0xc0a8, 0xc0ae], cookie: Buffer.alloc(32, 1), cid: Buffer.alloc(0) });
    const body = clientHelloBody({ random, suites: [0xc0a8] });
    const half = Math.floor(body.length / 2);
    const fragmented = Buffer.concat([handshakeFragment(HT.clientHello, 1, body, 0, half), handshakeFragment(HT.clientHello, 1, body, half, body.length - half)]);
    const cke = handshakeFragment(HT.clientKeyExchange, 2, vec16(Buffer.from('lab-sensor-01')), 0, 15);
    return [
      hello,
      writeRecord(CT.handshake, DTLS12, 0, 1, fragmented),
      Buffer.concat([writeRecord(CT.handshake, DTLS12, 0, 2, cke), writeRecord(CT.ccs, DTLS12, 0, 3, Buffer.from([1])), writeRecord(CT.handshake, DTLS12, 1, 0, Buffer.alloc(40, 0xee))]),
      writeRecord(CT.alert, DTLS12, 0, 4, Buffer.from([2, 40])),
      writeCidRecord(DTLS12, 1, 7, Buffer.alloc(8, 0xcc), Buffer.alloc(30, 0xdd)),
      writeRecord(CT.appData, DTLS12, 1, 9, Buffer.alloc(24, 0x42)),
    ];
  },
  run(input) {
    for (const cidLength of [0, 8]) {
      const recs = parseRecords(input, cidLength);
      check(recs.length <= 32, 'more than 32 records');
      const rebuilt = Buffer.concat(recs.map((r) => (r.cid ? writeCidRecord(r.version, r.epoch, r.seq, r.cid, r.fragment) : writeRecord(r.type, r.version, r.epoch, r.seq, r.fragment))));
      check(rebuilt.equals(input.subarray(0, rebuilt.length)), 'records rebuilt from parseRecords differ from the datagram');
      for (const r of recs) {
        check(r.cid !== undefined || r.fragment.length + RECORD_HEADER <= input.length, 'fragment longer than the datagram');
        if (r.type === CT.alert) parseAlert(r.fragment);
        if (r.type !== CT.handshake || r.epoch !== 0) continue;
        const frags = parseHandshakeFragments(r.fragment, 4096);
        if (!frags) continue;
        check(Buffer.concat(frags.map(rebuildFragment)).equals(r.fragment), 'handshake fragments rebuilt differ from the record');
        for (const f of frags) if (f.fragOffset === 0 && f.fragLength === f.length) handshakeBody(f.msgType, f.body);
      }
    }
  },
};

const dtlsHandshake: Target = {
  name: 'dtls-handshake',
  about: 'parseClientHello, parseClientKeyExchange, parseU16List, parseVec8Exact, parseAlert, splitInnerPlaintext never throw; what they accept rebuilds to the input',
  watch: ['/src/transport/dtls/wire.ts', '/src/transport/dtls/crypto.ts'],
  maxLen: 1500,
  dictionary: tokens([0xfe, 0xfd], [0x00, 0x0a], [0x00, 0x0b], [0x00, 0x0d], [0x00, 0x17], [0x00, 0x36], [0x00, 0x35], [0xff, 0x01], [0x00, 0x16], [0x00, 0x00], [0xc0, 0xa8], [0xc0, 0xae], [0x00, 0xff], [0x04], [0x41, 0x04], [0x00, 0x01, 0x00]),
  cbor: false,
  seeds: () => [...helloSeeds(), vec16(Buffer.from('lab-sensor-01')), vec8(Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 7)])), vec16(Buffer.from('00170018', 'hex')), vec8(Buffer.from('abcd', 'hex')), Buffer.from([2, 40]), innerPlaintext(23, Buffer.from('data'))],
  run(input) {
    helloOracle(input);
    const psk = parseClientKeyExchange(input, 'psk');
    if (psk) check(vec16(psk).equals(input), 'PSK identity rebuilt differs');
    const point = parseClientKeyExchange(input, 'ecdhe');
    if (point) check(vec8(point).equals(input) && point.length === 65 && point[0] === 4, 'ECDHE point rebuilt differs');
    const list = parseU16List(input);
    if (list) check(vec16(Buffer.concat(list.map(u16))).equals(input), 'u16 list rebuilt differs');
    const v8 = parseVec8Exact(input);
    if (v8) check(vec8(v8).equals(input), 'vec8 rebuilt differs');
    const alert = parseAlert(input);
    if (alert) check(Buffer.from([alert.level, alert.description]).equals(input), 'alert rebuilt differs');
    const inner = splitInnerPlaintext(input);
    if (inner) check(input.subarray(0, inner.content.length + 1).equals(innerPlaintext(inner.type, inner.content)) && inner.type !== 0, 'inner plaintext rebuilt differs');
  },
};

export const TRANSPORT_TARGETS = [coap, dtlsRecords, dtlsHandshake];
