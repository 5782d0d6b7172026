#!/usr/bin/env node
/* Writes the fixture messages of each decoder as a libFuzzer seed corpus: <out>/<decoder>/<n>. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const [root, out] = process.argv.slice(2);
const files = { cbor: ['cbor', 'request-body', 'refresh-body'], sign1: ['sign1'], claims: ['claims'], keyset: ['keyset'], response: ['response'] };
for (const [target, sources] of Object.entries(files)) {
  const dir = join(out, target);
  mkdirSync(dir, { recursive: true });
  let n = 0;
  for (const s of sources) {
    const f = JSON.parse(readFileSync(join(root, 'fixtures/protocol', `${s}.json`), 'utf8'));
    for (const c of [...f.valid, ...f.invalid]) writeFileSync(join(dir, String(n++)), Buffer.from(c.hex, 'hex'));
  }
}
const v = JSON.parse(readFileSync(join(root, 'fixtures/vectors/idprov-v1.json'), 'utf8'));
writeFileSync(join(out, 'sign1', 'vector-token'), Buffer.from(v.token.cwt, 'hex'));
writeFileSync(join(out, 'response', 'vector-sealed'), Buffer.from(v.sealed.approved_response_body, 'hex'));
mkdirSync(join(out, 'coap'), { recursive: true });
writeFileSync(join(out, 'coap', '0'), Buffer.from('6441123400112233c13c213cff a10000'.replace(/ /g, ''), 'hex'));
writeFileSync(join(out, 'coap', '1'), Buffer.from('6445abcd01020304c13cd1170aff8140', 'hex'));
// an mDNS answer: PTR idprov-x._idprov._udp.local, SRV port 5683 target h.local, TXT kid/fp/coaps, A 192.0.2.7
mkdirSync(join(out, 'mdns'), { recursive: true });
const name = (s) => Buffer.concat([...s.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])]);
const rr = (n, type, data) => Buffer.concat([name(n), Buffer.from([0, type, 0x80, 1, 0, 0, 0, 120, data.length >> 8, data.length & 255]), data]);
const txt = Buffer.concat(['v=1', 'kid=bbc3f7d0c18ed599', 'fp=abc', 'coaps=5684'].map((t) => Buffer.concat([Buffer.from([t.length]), Buffer.from(t)])));
const inst = 'idprov-x._idprov._udp.local';
const msg = Buffer.concat([Buffer.from([0, 0, 0x84, 0, 0, 0, 0, 4, 0, 0, 0, 0]), rr('_idprov._udp.local', 12, name(inst)),
  rr(inst, 33, Buffer.concat([Buffer.from([0, 0, 0, 0, 0x16, 0x33]), name('h.local')])), rr(inst, 16, txt), rr('h.local', 1, Buffer.from([192, 0, 2, 7]))]);
writeFileSync(join(out, 'mdns', '0'), msg);
