import { CoapCode, formatCode, parseCode } from '../../../src/protocol/coap-codes.ts';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { generate, parse, type Option } from 'coap-packet';
import {
  DECODE_FORMAT_ERROR,
  DECODE_IGNORE,
  DECODE_OK,
  DecodedMessage,
  MessageWriter,
  TYPE_ACK,
  TYPE_CON,
  decodeMessage,
  pathOf,
  queryOf,
} from '../../../src/transport/coap/codec.ts';
import { setup, prng } from '../../support/coap-engine.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function decode(buf: Buffer): { r: number; m: DecodedMessage } {
  const m = new DecodedMessage();
  return { r: decodeMessage(buf, m), m };
}

describe('CoAP codec (RFC 7252 §3)', () => {
  describe('strict decoding', () => {
    it('ignores datagrams shorter than the header and versions other than 1', () => {
      for (const b of ['', '40', '4001', '400100']) assert.equal(decode(hex(b)).r, DECODE_IGNORE, b);
      assert.equal(decode(hex('80011234')).r, DECODE_IGNORE);
      assert.equal(decode(hex('00011234')).r, DECODE_IGNORE);
    });

    it('rejects token lengths 9 to 15 as format errors, which coap-packet accepts for 13 and 14', () => {
      for (let tkl = 9; tkl <= 15; tkl++) {
        const b = Buffer.concat([Buffer.from([0x40 | tkl, 1, 0, 1]), Buffer.alloc(20)]);
        assert.equal(decode(b).r, DECODE_FORMAT_ERROR, `tkl ${tkl}`);
      }
      assert.doesNotThrow(() => parse(Buffer.concat([Buffer.from([0x4d, 1, 0, 1]), Buffer.alloc(20)])));
    });

    it('rejects an option value running past the end, which coap-packet silently truncates', () => {
      const b = hex('42011234abcd b868656c6c6f'); // Uri-Path claims 8 bytes, 5 present
      assert.equal(decode(b).r, DECODE_FORMAT_ERROR);
      assert.equal(parse(b).options[0]!.value.toString(), 'hello');
    });

    it('rejects a payload marker followed by no payload', () => {
      assert.equal(decode(hex('42011234abcd b568656c6c6f ff')).r, DECODE_FORMAT_ERROR);
    });

    it('rejects the reserved option nibble 15 in delta or length', () => {
      assert.equal(decode(hex('40011234 f1 00')).r, DECODE_FORMAT_ERROR);
      assert.equal(decode(hex('40011234 1f 00')).r, DECODE_FORMAT_ERROR);
    });

    it('rejects an empty message that carries a token or bytes after the header', () => {
      assert.equal(decode(hex('40000001')).r, DECODE_OK);
      assert.equal(decode(hex('41000001aa')).r, DECODE_FORMAT_ERROR);
      assert.equal(decode(hex('40000001ff')).r, DECODE_FORMAT_ERROR);
    });

    it('rejects truncated extended deltas and lengths', () => {
      for (const b of ['40011234 d0', '40011234 e0 00', '40011234 0d', '40011234 0e 00', '40011234 01']) {
        assert.equal(decode(hex(b)).r, DECODE_FORMAT_ERROR, b);
      }
    });

    it('decodes path, query and the options the engine acts on', () => {
      const b = generate({
        code: 'POST',
        messageId: 7,
        token: Buffer.from('0102', 'hex'),
        confirmable: true,
        options: [
          { name: 'Uri-Path', value: Buffer.from('idprov') },
          { name: 'Uri-Path', value: Buffer.from('request') },
          { name: 'Uri-Query', value: Buffer.from('a=1') },
          { name: 'Content-Format', value: Buffer.from([18]) },
          { name: 'Accept', value: Buffer.from([60]) },
          { name: 'Block2', value: Buffer.from([0x16]) },
          { name: 'Size2', value: Buffer.alloc(0) },
        ],
        payload: Buffer.from('body'),
      });
      const { r, m } = decode(b);
      assert.equal(r, DECODE_OK);
      assert.equal(m.type, TYPE_CON);
      assert.equal(m.code, 2);
      assert.equal(m.messageId, 7);
      assert.equal(pathOf(b, m), '/idprov/request');
      assert.deepEqual(queryOf(b, m), ['a=1']);
      assert.equal(m.contentFormat, 18);
      assert.equal(m.accept, 60);
      assert.equal(m.block2, 0x16);
      assert.equal(m.size2, true);
      assert.equal(b.subarray(m.payloadStart).toString(), 'body');
      assert.equal(m.badCritical, 0);
    });

    it('flags the first unrecognised critical option and ignores elective ones', () => {
      const b = generate({
        code: 'GET',
        options: [
          { name: 'If-Match', value: Buffer.from([1]) },
          { name: '2048', value: Buffer.from([1]) },
          { name: '2049', value: Buffer.from([1]) },
        ],
      });
      const { m } = decode(b);
      assert.equal(m.badCritical, 1);
    });

    it('never throws on any prefix of a valid datagram', () => {
      const b = generate({
        code: 'POST',
        messageId: 9,
        token: Buffer.from('0102030405060708', 'hex'),
        options: [
          { name: 'Uri-Path', value: Buffer.from('a'.repeat(20)) },
          { name: 'Uri-Query', value: Buffer.from('q'.repeat(300)) },
          { name: '2048', value: Buffer.from('x') },
        ],
        payload: Buffer.from('payload'),
      });
      for (let n = 0; n <= b.length; n++) {
        const { r } = decode(b.subarray(0, n));
        assert.ok(r === DECODE_OK || r === DECODE_IGNORE || r === DECODE_FORMAT_ERROR);
      }
    });
  });

  describe('agreement with coap-packet (the reference codec)', () => {
    const known = ['Uri-Path', 'Uri-Query', 'Content-Format', 'Accept', 'ETag', 'Observe', 'Max-Age', 'Block2', 'Size2', 'Location-Path'];

    function randomRequest(rnd: () => number): { buf: Buffer; path: string; query: string[]; payload: Buffer } {
      const segs = Array.from({ length: Math.floor(rnd() * 4) }, () => 'p'.repeat(Math.floor(rnd() * 300) % 256));
      const query = Array.from({ length: Math.floor(rnd() * 3) }, (_, i) => `k${i}=${'v'.repeat(Math.floor(rnd() * 20))}`);
      const options: Option[] = [
        ...segs.map((s) => ({ name: 'Uri-Path', value: Buffer.from(s) })),
        ...query.map((q) => ({ name: 'Uri-Query', value: Buffer.from(q) })),
      ];
      for (const name of known.slice(2)) if (rnd() < 0.3) options.push({ name, value: Buffer.from([Math.floor(rnd() * 200)]) });
      if (rnd() < 0.2) options.push({ name: String(1000 + 2 * Math.floor(rnd() * 30000)), value: Buffer.alloc(Math.floor(rnd() * 300)) });
      const payload = rnd() < 0.5 ? Buffer.alloc(Math.floor(rnd() * 600) + 1, 7) : Buffer.alloc(0);
      const buf = generate({
        code: ['GET', 'POST', 'PUT', 'DELETE'][Math.floor(rnd() * 4)]!,
        messageId: Math.floor(rnd() * 65536),
        token: Buffer.alloc(Math.floor(rnd() * 9), 3),
        confirmable: rnd() < 0.5,
        options,
        payload,
      }, 70_000);
      return { buf, path: '/' + segs.join('/'), query, payload };
    }

    it('decodes 2000 random requests generated by coap-packet to the same fields', () => {
      const rnd = prng(7252);
      for (let i = 0; i < 2000; i++) {
        const { buf, path, query, payload } = randomRequest(rnd);
        const ref = parse(buf);
        const { r, m } = decode(buf);
        assert.equal(r, DECODE_OK);
        assert.equal(m.messageId, ref.messageId);
        assert.equal(m.type === TYPE_CON, ref.confirmable);
        assert.equal(formatCode(m.code), ref.code);
        assert.equal(m.tokenLength, ref.token.length);
        assert.equal(pathOf(buf, m), path === '/' ? '/' : path);
        assert.deepEqual(queryOf(buf, m), query);
        assert.deepEqual(buf.subarray(m.payloadStart), payload);
        const cf = ref.options.find((o) => o.name === 'Content-Format');
        assert.equal(m.contentFormat, cf === undefined ? -1 : cf.value[0]);
      }
    });

    it('encodes responses byte for byte as coap-packet generates them', () => {
      const rnd = prng(7959);
      const w = new MessageWriter();
      for (let i = 0; i < 2000; i++) {
        const token = Buffer.alloc(Math.floor(rnd() * 9), 0x5a);
        const mid = Math.floor(rnd() * 65536);
        const code = ['2.05', '2.01', '4.04', '5.03'][Math.floor(rnd() * 4)]!;
        const payload = rnd() < 0.7 ? Buffer.alloc(1 + Math.floor(rnd() * 1100), 1) : Buffer.alloc(0);
        const opts: { number: number; value: Buffer }[] = [];
        let n = 0;
        for (let k = 0; k < 5; k++) {
          n += [0, 1, 12, 13, 200, 268, 269, 1000][Math.floor(rnd() * 8)]!;
          if (n === 0) n = 1;
          opts.push({ number: n, value: Buffer.alloc([0, 1, 12, 13, 268, 269, 300][Math.floor(rnd() * 7)]!, 9) });
        }
        w.begin(TYPE_ACK, parseCode(code), mid, token);
        for (const o of opts) w.option(o.number, o.value);
        const mine = w.payload(payload).finish();
        const ref = generate(
          { code, ack: true, messageId: mid, token, payload, options: opts.map((o) => ({ name: String(o.number), value: o.value })) },
          70_000,
        );
        assert.deepEqual(mine, ref, `case ${i}`);
      }
    });

    it('encodes uint options minimally', () => {
      const w = new MessageWriter();
      const cases: [number, string][] = [
        [0, ''],
        [1, '01'],
        [255, 'ff'],
        [256, '0100'],
        [65536, '010000'],
        [2 ** 32 - 1, 'ffffffff'],
      ];
      for (const [v, h] of cases) {
        const b = w.begin(TYPE_ACK, 69, 1, Buffer.alloc(0)).optionUint(14, v).finish();
        assert.equal(parse(b).options[0]!.value.toString('hex'), h);
      }
    });

  });

  describe('golden vectors (fixtures/coap/engine-vectors.json)', () => {
    const file = JSON.parse(readFileSync(new URL('../../../fixtures/coap/engine-vectors.json', import.meta.url), 'utf8')) as {
      vectors: { name: string; request: string; response: string | null; ignoreMessageId?: boolean }[];
    };
    const big = Buffer.alloc(3000, 0x41);
    const etag = createHash('sha256').update(big).digest().subarray(0, 8).toString('hex');

    for (const v of file.vectors) {
      it(`answers exactly as recorded: ${v.name}`, () => {
        const { server, serverT, clientT } = setup();
        server.addResource({ path: '/hello', methods: { GET: () => ({ code: CoapCode.Content, contentFormat: 0, payload: Buffer.from('hello') }) } });
        server.addResource({ path: '/big', methods: { GET: () => ({ code: CoapCode.Content, payload: big }) } });
        const sent: Buffer[] = [];
        serverT.onSend = (d) => sent.push(d);
        serverT.injectSync(hex(v.request), clientT.peer);
        if (v.response === null) {
          assert.equal(sent.length, 0);
        } else {
          assert.equal(sent.length, 1);
          const want = hex(v.response.replace('{etag}', etag).replace('{41x952}', '41'.repeat(952)));
          const got = Buffer.from(sent[0]!);
          if (v.ignoreMessageId === true) got.writeUInt16BE(0, 2);
          assert.equal(got.toString('hex'), want.toString('hex'));
        }
        server.close();
      });
    }
  });
});
