/**
 * Allowlist files (docs/spec/idprov-coap-v1.md §5 rules 1 and 4; README "Allowlist files"): JSON arrays and CSV with a
 * header row. Every problem is reported with the line number of the row it is on; one bad row means
 * the caller imports nothing. Sample files live in fixtures/allowlists/ (see its README.md).
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { toHex } from '../support/bytes.ts';
import { mutate, prng } from '../support/mutation.ts';
import { formatMac, parseAllowlist, parseMac, parsePublicKey, type AllowlistParse } from '../../src/protocol/allowlist.ts';
import { isValidDeviceId } from '../../src/protocol/messages.ts';
import { privateKeyFromSeed, rawPublicKey } from '../../src/tokens/ed25519.ts';

const NOW = 1_767_225_600;
const fixture = (name: string): string => readFileSync(new URL(`../../fixtures/allowlists/${name}`, import.meta.url), 'utf8');
const parse = (text: string, extra: { minSecretLength?: number; warnSecretLength?: number } = {}): AllowlistParse => parseAllowlist(text, { now: NOW, ...extra });
const PK_A = '79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664';
const PK_B = 'da29e95b02e00ffa15645775fb1d2ba222a1943395eea06b94e2c057b7be69d0';

/** A JSON view of entries (bytes as hex) for comparisons. */
const view = (r: AllowlistParse) => r.entries.map((e) => ({ ...e, ...(e.pk ? { pk: toHex(e.pk) } : {}), ...(e.mac ? { mac: toHex(e.mac) } : {}) }));

/** The one error of `r`, which must be on `line`, with a message starting with `prefix`. */
function oneError(r: AllowlistParse, line: number, prefix: string): void {
  assert.equal(r.errors.length, 1, `errors: ${JSON.stringify(r.errors)}`);
  assert.equal(r.errors[0]!.line, line, `line of ${JSON.stringify(r.errors[0])}`);
  assert.ok(r.errors[0]!.message.startsWith(prefix), `message "${r.errors[0]!.message}" should start with "${prefix}"`);
}

/** CSV with a header, a comment, a blank line and good rows around `bad` (which lands on line 5). */
const csvAround = (bad: string) => `id,pk,mac,secret,type,expires\n# devices\ngood-1,${PK_A},,,,\n\n${bad}\ngood-2,,24:0a:c4:00:00:02,,,\n`;
/** Pretty JSON with good entries around `bad` (an object literal; lands on line 4). */
const jsonAround = (bad: string) => `[\n  {"id": "good-1", "pk": "${PK_A}"},\n\n  ${bad},\n  {"id": "good-2", "mac": "24:0a:c4:00:00:02"}\n]\n`;

describe('allowlist files', () => {
  describe('the sample files in fixtures/allowlists', () => {
    it('parses good.csv into 20 entries without errors or warnings', () => {
      const r = parse(fixture('good.csv'));
      assert.deepEqual(r.errors, []);
      assert.deepEqual(r.warnings, []);
      assert.equal(r.entries.length, 20);
      for (const e of r.entries) {
        assert.ok(isValidDeviceId(e.id));
        assert.ok(e.pk || e.mac || e.secret, `${e.id} has a factor`);
        assert.equal(e.createdAt, NOW);
      }
    });

    it('parses good.json into exactly the entries of good.csv', () => {
      const json = parse(fixture('good.json'));
      assert.deepEqual(json.errors, []);
      assert.deepEqual(json.warnings, []);
      assert.deepEqual(view(json), view(parse(fixture('good.csv'))));
    });

    it('derives every key from the seed fixtures/allowlists/README.md documents', () => {
      const readme = fixture('README.md');
      for (const e of parse(fixture('good.csv')).entries.filter((x) => x.pk)) {
        const seed = createHash('sha256').update(`idprov-fixture:${e.id}`).digest();
        assert.equal(toHex(e.pk!), toHex(rawPublicKey(privateKeyFromSeed(seed))), e.id);
        assert.ok(readme.includes(toHex(seed)) && readme.includes(toHex(e.pk!)), `README lists the seed and key of ${e.id}`);
      }
    });

    it('lists every fixture secret in the README', () => {
      const readme = fixture('README.md');
      for (const e of parse(fixture('good.csv')).entries.filter((x) => x.secret)) assert.ok(readme.includes(e.secret!), e.id);
    });

    it('reads the fields of the sample entries as written', () => {
      const byId = new Map(parse(fixture('good.csv')).entries.map((e) => [e.id, e]));
      assert.equal(toHex(byId.get('cam-entrance')!.pk!), '079ef46dbac13c517e7c6444f6927c53b725e34614c63ecef6d1c2fde71cd943');
      assert.equal(byId.get('cam-yard')!.secret, 'fixture,oob "yard" 2030');
      assert.equal(toHex(byId.get('zigbee-gw-01')!.mac!), '00124b001ca27f10');
      assert.equal(toHex(byId.get('plug-livingroom')!.mac!), '240ac4aabb01');
      assert.equal(toHex(byId.get('plug-office')!.mac!), '240ac4aabb02');
      assert.deepEqual(
        ['hub-bridge.svc', 'dashboard:wall-1', 'meter.main-01', 'meter.main-02', 'esp32-door-01', 'plug-office'].map((id) => byId.get(id)!.type),
        [1, 2, 1, 2, 0, 0],
      );
      assert.equal(byId.get('esp32-window-02')!.expires, 1_893_456_000);
      assert.equal(byId.get('thermo-kitchen')!.expires, 1_893_456_000);
      assert.equal(byId.get('lock-front')!.expires, 1_909_051_200);
      assert.equal(byId.get('lock-back')!.expires, 1_909_051_200);
      assert.equal(byId.get('esp32-door-01')!.expires, undefined);
    });

    it('reports the broken row of bad-row.csv by its line number, so the caller imports nothing', () => {
      const r = parse(fixture('bad-row.csv'));
      oneError(r, 24, 'mac:');
      assert.equal(r.errors[0]!.id, 'plug-livingroom');
      assert.equal(fixture('bad-row.csv').split('\n')[23]!.split(',')[0], 'plug-livingroom');
    });
  });

  describe('CSV', () => {
    it('reads quoted fields with embedded commas, doubled quotes and newlines, and counts lines through them', () => {
      const text = 'id,secret,mac\n"dev-1","a, b ""c""\nline two",\ndev-2,,24:0a:c4:00:00:02\ndev 3,,\n';
      const r = parse(text, { warnSecretLength: 0 });
      assert.equal(r.entries[0]!.secret, 'a, b "c"\nline two');
      assert.equal(r.entries[1]!.id, 'dev-2');
      oneError(r, 5, 'id:');
    });

    it('gives the same entries and line numbers for CRLF, LF and CR line endings', () => {
      const lf = csvAround('dev/bad,,24:0a:c4:00:00:01,,,');
      const results = [lf, lf.replace(/\n/g, '\r\n'), lf.replace(/\n/g, '\r')].map((t) => parse(t));
      for (const r of results) {
        oneError(r, 5, 'id:');
        assert.deepEqual(view(r), view(results[0]!));
      }
    });

    it('keeps CRLF inside a quoted field and still counts it as one line', () => {
      const r = parse('id,secret\r\ndev-1,"first\r\nsecond-line-of-it"\r\ndev/2,\r\n');
      assert.equal(r.entries[0]!.secret, 'first\r\nsecond-line-of-it');
      oneError(r, 4, 'id:');
    });

    it('ignores a UTF-8 byte order mark', () => {
      const r = parse('\uFEFFid,mac\ndev-1,24:0a:c4:00:00:01\n');
      assert.deepEqual(r.errors, []);
      assert.equal(r.entries[0]!.id, 'dev-1');
    });

    it('skips comment lines and blank lines, but counts them', () => {
      // The comment on line 6 opens a quote after a comma; it must not swallow the rows below it.
      const r = parse('# allowlist\n\n  # indented comment\nid,mac\n\n# note,"unbalanced quote\n\t\ndev-1,24:0a:c4:00:00:01\n,,\n  \ndev/2,24:0a:c4:00:00:02\n');
      assert.equal(r.entries.length, 1);
      oneError(r, 11, 'id:');
    });

    it('skips empty spreadsheet rows (only commas)', () => {
      const r = parse('id,pk,mac\ndev-1,,24:0a:c4:00:00:01\n,,\n,,\n');
      assert.deepEqual(r.errors, []);
      assert.equal(r.entries.length, 1);
    });

    it('trims unquoted fields and keeps the spaces of quoted ones', () => {
      const r = parse('id , secret ,type\n  dev-1 ,  sixteen-chars-ok  , service \ndev-2," padded secret 16 ",\n');
      assert.deepEqual(r.errors, []);
      assert.equal(r.entries[0]!.id, 'dev-1');
      assert.equal(r.entries[0]!.secret, 'sixteen-chars-ok');
      assert.equal(r.entries[0]!.type, 1);
      assert.equal(r.entries[1]!.secret, ' padded secret 16 ');
    });

    it('takes the columns in any order, in any case, and only those it needs', () => {
      const r = parse(`MAC,Id\n24:0a:c4:00:00:01,dev-1\n`);
      assert.deepEqual(r.errors, []);
      assert.equal(r.entries[0]!.id, 'dev-1');
      assert.equal(toHex(r.entries[0]!.mac!), '240ac4000001');
    });

    it('treats fewer cells than columns as empty fields', () => {
      const r = parse(`id,mac,pk,secret\ndev-1,24:0a:c4:00:00:01\n`);
      assert.deepEqual(r.errors, []);
      assert.equal(r.entries[0]!.pk, undefined);
    });

    it('refuses a row with more cells than the header has columns, with its line', () => {
      oneError(parse(csvAround('dev-3,,24:0a:c4:00:00:03,,,,extra')), 5, 'row has 7 fields');
    });

    it('refuses a file whose header does not name an id column', () => {
      oneError(parse('# comment\ndevice,mac\ndev-1,24:0a:c4:00:00:01\n'), 2, 'CSV header');
    });

    it('reports an unterminated quoted field at the line where the row starts', () => {
      const r = parse('id,secret\ndev-1,sixteen-chars-ok\ndev-2,"never closed\nmore\n');
      assert.ok(r.errors.some((e) => e.line === 3 && e.message.includes('unterminated')), JSON.stringify(r.errors));
    });

    it('refuses an empty file, or one with only comments and blank lines', () => {
      for (const text of ['', '\n\n', '# nothing here\n\n# really\n', '\uFEFF']) {
        const r = parse(text);
        assert.equal(r.entries.length, 0);
        assert.ok(r.errors.length > 0, JSON.stringify(text));
        assert.equal(r.errors[0]!.line, 1);
      }
    });

    it('warns once per row about a column it does not know', () => {
      const r = parse('id,mac,owner\ndev-1,24:0a:c4:00:00:01,alice\ndev-2,24:0a:c4:00:00:02,\n');
      assert.deepEqual(r.errors, []);
      assert.deepEqual(r.warnings.map((w) => [w.line, w.id]), [[2, 'dev-1']]);
      assert.ok(r.warnings[0]!.message.includes('owner'));
    });
  });

  describe('JSON', () => {
    it('reads an array of objects with string and number fields', () => {
      const r = parse(`[{"id": "dev-1", "pk": "${PK_A}", "type": 2, "expires": 1893456000}, {"id": "dev-2", "mac": "24:0a:c4:00:00:02", "type": "service", "expires": "2030-01-01"}]`);
      assert.deepEqual(r.errors, []);
      assert.deepEqual(
        r.entries.map((e) => [e.id, e.type, e.expires]),
        [
          ['dev-1', 2, 1_893_456_000],
          ['dev-2', 1, 1_893_456_000],
        ],
      );
    });

    it('treats null and empty-string fields as absent', () => {
      const r = parse(`[{"id": "dev-1", "pk": null, "mac": "24:0a:c4:00:00:01", "secret": "", "type": null, "expires": null}]`);
      assert.deepEqual(r.errors, []);
      assert.deepEqual(Object.keys(r.entries[0]!).sort(), ['createdAt', 'id', 'mac', 'type']);
    });

    it('reports the line of the element that is wrong, counting from the opening bracket', () => {
      oneError(parse(jsonAround('{"id": "dev/3", "mac": "24:0a:c4:00:00:03"}')), 4, 'id:');
      const multi = `[\n  {\n    "id": "dev-1",\n    "mac": "24:0a:c4:00:00:01"\n  },\n  {\n    "id": "dev-2",\n    "mac": "nope"\n  }\n]`;
      oneError(parse(multi), 6, 'mac:');
    });

    it('keeps line numbers right when strings hold brackets, braces and escaped quotes', () => {
      const text = `[\n  {"id": "dev-1", "secret": "a [tricky] {secret} \\"quoted\\" \\\\"},\n  {"id": "dev-2", "mac": "bad"}\n]`;
      const r = parse(text);
      assert.equal(r.entries[0]!.secret, 'a [tricky] {secret} "quoted" \\');
      oneError(r, 3, 'mac:');
    });

    it('refuses elements that are not objects, each with its own line', () => {
      const r = parse(`[\n  "dev-1",\n  42,\n  null,\n  ["dev-2"],\n  true,\n  {"id": "dev-3", "mac": "24:0a:c4:00:00:03"}\n]`);
      assert.deepEqual(r.errors.map((e) => e.line), [2, 3, 4, 5, 6]);
      assert.ok(r.errors.every((e) => e.message === 'entry must be an object'));
      assert.equal(r.entries.length, 1);
    });

    it('refuses fields of the wrong JSON type with the line of their element', () => {
      for (const bad of [`{"id": 7, "mac": "24:0a:c4:00:00:03"}`, `{"id": "dev-3", "pk": 12}`, `{"id": "dev-3", "mac": ["24:0a:c4:00:00:03"]}`, `{"id": "dev-3", "secret": {"v": "sixteen-chars-ok"}}`]) {
        const r = parse(jsonAround(bad));
        assert.equal(r.errors.length, 1, bad);
        assert.equal(r.errors[0]!.line, 4, bad);
      }
    });

    it('reports a syntax error on line 1 and nothing else', () => {
      const r = parse('[{"id": "dev-1",]');
      assert.equal(r.entries.length, 0);
      assert.equal(r.errors.length, 1);
      assert.equal(r.errors[0]!.line, 1);
      assert.ok(r.errors[0]!.message.startsWith('JSON:'));
    });

    it('warns about keys it does not know', () => {
      const r = parse(jsonAround('{"id": "dev-3", "mac": "24:0a:c4:00:00:03", "owner": "alice"}'));
      assert.deepEqual(r.errors, []);
      assert.deepEqual(r.warnings.map((w) => [w.line, w.id]), [[4, 'dev-3']]);
    });

    it('reads an empty array as no entries and no errors', () => {
      assert.deepEqual(parse(' [ ] '), { entries: [], errors: [], warnings: [] });
    });
  });

  describe('public keys', () => {
    const pem = () => {
      const { publicKey } = generateKeyPairSync('ed25519');
      return { pem: (publicKey.export({ type: 'spki', format: 'pem' }) as string).trim(), raw: toHex(publicKey.export({ format: 'der', type: 'spki' }).subarray(12)) };
    };

    it('accepts an Ed25519 PEM SPKI key in a quoted CSV field and in JSON', () => {
      const k = pem();
      const csv = parse(`id,pk\ndev-1,"${k.pem}"\ndev/2,${PK_A}\n`);
      assert.equal(toHex(csv.entries[0]!.pk!), k.raw);
      oneError(csv, 5, 'id:'); // the PEM takes lines 2-4
      const json = parse(JSON.stringify([{ id: 'dev-1', pk: k.pem }]));
      assert.equal(toHex(json.entries[0]!.pk!), k.raw);
    });

    it('accepts a PEM key with CRLF line endings', () => {
      const k = pem();
      assert.equal(toHex(parsePublicKey(k.pem.replace(/\n/g, '\r\n'))), k.raw);
    });

    it('accepts 64 hex digits in either case, with or without 0x', () => {
      for (const t of [PK_A, PK_A.toUpperCase(), `0x${PK_A}`, ` ${PK_A} `]) assert.equal(toHex(parsePublicKey(t)), PK_A);
    });

    it('refuses keys of the wrong length, non-hex text, other key types and private keys, with the row line', () => {
      const { publicKey: ec, privateKey: ecPriv } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const { privateKey: edPriv } = generateKeyPairSync('ed25519');
      const bad = [
        PK_A.slice(1),
        PK_A + '00',
        'zz' + PK_A.slice(2),
        (ec.export({ type: 'spki', format: 'pem' }) as string).trim(),
        (ecPriv.export({ type: 'pkcs8', format: 'pem' }) as string).trim(),
        (edPriv.export({ type: 'pkcs8', format: 'pem' }) as string).trim(),
        '-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----',
      ];
      for (const pk of bad) {
        oneError(parse(jsonAround(JSON.stringify({ id: 'dev-3', pk }))), 4, 'pk:');
        const csv = parse(`id,pk\n# a comment\n"dev-3","${pk}"\n`);
        oneError(csv, 3, 'pk:');
      }
    });
  });

  describe('field validation, with the line of the bad row (CSV line 5, JSON line 4)', () => {
    const cases: Array<{ what: string; csv: string; json: Record<string, unknown>; prefix: string }> = [
      { what: 'a missing id', csv: `,${PK_B},,,,`, json: { pk: PK_B }, prefix: 'id:' },
      { what: 'an id with a slash', csv: `dev/3,${PK_B},,,,`, json: { id: 'dev/3', pk: PK_B }, prefix: 'id:' },
      { what: 'an id with an inner space', csv: `dev 3,${PK_B},,,,`, json: { id: 'dev 3', pk: PK_B }, prefix: 'id:' },
      { what: 'an id with a non-ASCII letter', csv: `dév-3,${PK_B},,,,`, json: { id: 'dév-3', pk: PK_B }, prefix: 'id:' },
      { what: 'an id of 65 characters', csv: `${'d'.repeat(65)},${PK_B},,,,`, json: { id: 'd'.repeat(65), pk: PK_B }, prefix: 'id:' },
      { what: 'a pk of 31 bytes', csv: `dev-3,${PK_B.slice(2)},,,,`, json: { id: 'dev-3', pk: PK_B.slice(2) }, prefix: 'pk:' },
      { what: 'a mac of 5 bytes', csv: 'dev-3,,24:0a:c4:00:00,,,', json: { id: 'dev-3', mac: '24:0a:c4:00:00' }, prefix: 'mac:' },
      { what: 'a mac of 7 bytes', csv: 'dev-3,,24:0a:c4:00:00:03:ff,,,', json: { id: 'dev-3', mac: '24:0a:c4:00:00:03:ff' }, prefix: 'mac:' },
      { what: 'a mac of 9 bytes', csv: 'dev-3,,24:0a:c4:00:00:03:ff:ee:dd,,,', json: { id: 'dev-3', mac: '24:0a:c4:00:00:03:ff:ee:dd' }, prefix: 'mac:' },
      { what: 'a mac with a non-hex digit', csv: 'dev-3,,24:0a:c4:00:00:0g,,,', json: { id: 'dev-3', mac: '24:0a:c4:00:00:0g' }, prefix: 'mac:' },
      { what: 'a secret of 11 characters', csv: 'dev-3,,,eleven-char,,', json: { id: 'dev-3', secret: 'eleven-char' }, prefix: 'secret:' },
      { what: 'an unknown type name', csv: `dev-3,${PK_B},,,admin,`, json: { id: 'dev-3', pk: PK_B, type: 'admin' }, prefix: 'type:' },
      { what: 'type 3', csv: `dev-3,${PK_B},,,3,`, json: { id: 'dev-3', pk: PK_B, type: 3 }, prefix: 'type:' },
      { what: 'an expiry that is no date', csv: `dev-3,${PK_B},,,,tomorrow`, json: { id: 'dev-3', pk: PK_B, expires: 'tomorrow' }, prefix: 'expires:' },
      { what: 'an impossible date', csv: `dev-3,${PK_B},,,,2030-02-31`, json: { id: 'dev-3', pk: PK_B, expires: '2030-02-31' }, prefix: 'expires:' },
      { what: 'a date and time without a time zone', csv: `dev-3,${PK_B},,,,2030-01-01T00:00:00`, json: { id: 'dev-3', pk: PK_B, expires: '2030-01-01T00:00:00' }, prefix: 'expires:' },
      { what: 'a fractional epoch', csv: `dev-3,${PK_B},,,,1893456000.5`, json: { id: 'dev-3', pk: PK_B, expires: 1893456000.5 }, prefix: 'expires:' },
      { what: 'no factor at all', csv: 'dev-3,,,,device,', json: { id: 'dev-3', type: 'device' }, prefix: 'row needs at least one of pk, mac, secret' },
      { what: 'a duplicate of an earlier id', csv: 'good-1,,24:0a:c4:00:00:09,,,', json: { id: 'good-1', mac: '24:0a:c4:00:00:09' }, prefix: 'id: duplicate of line' },
    ];
    for (const c of cases) {
      it(`refuses ${c.what}`, () => {
        oneError(parse(csvAround(c.csv)), 5, c.prefix);
        oneError(parse(jsonAround(JSON.stringify(c.json))), 4, c.prefix);
      });
    }

    it('names the line of the first occurrence in a duplicate error, and the id', () => {
      const r = parse(csvAround('good-1,,24:0a:c4:00:00:09,,,'));
      assert.equal(r.errors[0]!.message, 'id: duplicate of line 3');
      assert.equal(r.errors[0]!.id, 'good-1');
      assert.equal(r.entries.filter((e) => e.id === 'good-1').length, 1);
    });

    it('reports every bad row, not only the first', () => {
      const r = parse('id,mac\ndev/1,24:0a:c4:00:00:01\ndev-2,bad\ndev-3,24:0a:c4:00:00:03\ndev-2,24:0a:c4:00:00:04\n,24:0a:c4:00:00:05\n');
      assert.deepEqual(r.errors.map((e) => e.line), [2, 3, 6]);
      // dev-2's first row was bad, so its second row is no duplicate.
      assert.deepEqual(r.entries.map((e) => e.id), ['dev-3', 'dev-2']);
    });

    it('accepts the boundaries: an id of 64 characters, EUI-64 MACs, MACs with dashes or no separators', () => {
      const r = parse(`id,mac\n${'d'.repeat(64)},00:12:4b:00:1c:a2:7f:10\ndev-2,24-0A-C4-00-00-02\ndev-3,240ac4000003\n`);
      assert.deepEqual(r.errors, []);
      assert.deepEqual(r.entries.map((e) => toHex(e.mac!)), ['00124b001ca27f10', '240ac4000002', '240ac4000003']);
    });

    it('formats MACs back as colon-separated lower-case hex', () => {
      assert.equal(formatMac(parseMac('24-0A-C4-00-00-02')), '24:0a:c4:00:00:02');
      assert.equal(formatMac(parseMac('00124B001CA27F10')), '00:12:4b:00:1c:a2:7f:10');
    });
  });

  describe('out-of-band secrets (docs/spec/idprov-coap-v1.md §5 rule 4)', () => {
    const one = (secret: string, extra = {}) => parse(JSON.stringify([{ id: 'dev-1', secret }]), extra);

    it('refuses secrets shorter than 12 characters at import', () => {
      for (const s of ['', 'x', '11-chars-ab']) {
        const r = one(s);
        if (s === '') assert.equal(r.errors[0]!.message, 'row needs at least one of pk, mac, secret');
        else oneError(r, 2 - 1, 'secret: shorter than 12');
      }
    });

    it('accepts 12 to 15 characters with a warning on the row, and 16 or more silently', () => {
      for (const n of [12, 15]) {
        const r = one('s'.repeat(n));
        assert.deepEqual(r.errors, []);
        assert.equal(r.warnings.length, 1);
        assert.equal(r.warnings[0]!.line, 1);
        assert.equal(r.warnings[0]!.id, 'dev-1');
        assert.ok(r.warnings[0]!.message.startsWith('secret:'));
      }
      for (const n of [16, 64]) assert.deepEqual(one('s'.repeat(n)).warnings, []);
    });

    it('counts characters, not UTF-8 bytes', () => {
      assert.deepEqual(one('€'.repeat(12)).errors, []);
      assert.equal(one('€'.repeat(11)).errors.length, 1);
      assert.deepEqual(one('\u{1F511}'.repeat(16)).warnings, []);
      assert.equal(one('\u{1F511}'.repeat(11)).errors.length, 1);
    });

    it('follows the configured minimum and warning lengths', () => {
      assert.equal(one('sixteen-chars-ok', { minSecretLength: 20 }).errors.length, 1);
      assert.deepEqual(one('twelve-chars', { minSecretLength: 8, warnSecretLength: 8 }).warnings, []);
      assert.equal(one('eight-ch', { minSecretLength: 8 }).errors.length, 0);
    });

    it('keeps the secret exactly as written', () => {
      assert.equal(one('  Grüße, "label" 7Q4K  ').entries[0]!.secret, '  Grüße, "label" 7Q4K  ');
    });
  });

  describe('types and expiry', () => {
    it('reads the type names and numbers in any case and with spaces', () => {
      const rows = ['device', 'service', 'consumer', '0', '1', '2', 'Service', ' CONSUMER '];
      const r = parse(`id,mac,type\n${rows.map((t, i) => `dev-${i},24:0a:c4:00:00:0${i},"${t}"`).join('\n')}\n`);
      assert.deepEqual(r.errors, []);
      assert.deepEqual(r.entries.map((e) => e.type), [0, 1, 2, 0, 1, 2, 1, 2]);
    });

    it('defaults the type to device', () => {
      assert.equal(parse(`id,mac\ndev-1,24:0a:c4:00:00:01\n`).entries[0]!.type, 0);
    });

    it('reads ISO 8601 dates and epoch seconds as epoch seconds', () => {
      const cases: Array<[string | number, number]> = [
        ['2030-01-01', 1_893_456_000],
        ['2030-01-01T00:00:00Z', 1_893_456_000],
        ['2030-01-01T00:00Z', 1_893_456_000],
        ['2030-01-01T02:00:00+02:00', 1_893_456_000],
        ['2029-12-31T19:00:00-05:00', 1_893_456_000],
        ['2030-01-01T00:00:00.999Z', 1_893_456_000],
        ['2028-02-29', 1_835_395_200],
        ['1893456000', 1_893_456_000],
        [1_893_456_000, 1_893_456_000],
      ];
      for (const [expires, want] of cases) {
        const r = parse(JSON.stringify([{ id: 'dev-1', mac: '24:0a:c4:00:00:01', expires }]));
        assert.deepEqual(r.errors, [], String(expires));
        assert.equal(r.entries[0]!.expires, want, String(expires));
      }
    });

    it('refuses non-ISO date formats that would be read in the server time zone', () => {
      for (const expires of ['Jan 1 2030', '2030/01/01', '01.01.2030', '2030-01-01 00:00', '2030-01-01T00:00:00', '2030-13-01', '2029-02-29', -5, 0, 1.5]) {
        const r = parse(JSON.stringify([{ id: 'dev-1', mac: '24:0a:c4:00:00:01', expires }]));
        assert.equal(r.errors.length, 1, String(expires));
        assert.ok(r.errors[0]!.message.startsWith('expires:'), String(expires));
      }
    });
  });

  describe('one bad row', () => {
    it('yields an error for that row and keeps the others apart, so the caller can refuse the whole file', () => {
      const text = fixture('good.csv').replace('meter.main-02,', 'meter main-02,');
      const r = parse(text);
      assert.equal(r.errors.length, 1);
      assert.equal(text.split('\n')[r.errors[0]!.line - 1]!.startsWith('meter main-02,'), true);
      assert.equal(r.entries.length, 19);
    });
  });

  describe('mutation', () => {
    /** Invariants of any parse result. */
    function checkResult(r: AllowlistParse, text: string, label: string): void {
      const lines = text.split(/\r\n|\r|\n/).length;
      assert.ok(Array.isArray(r.entries) && Array.isArray(r.errors) && Array.isArray(r.warnings), label);
      for (const p of [...r.errors, ...r.warnings]) {
        assert.ok(Number.isInteger(p.line) && p.line >= 1 && p.line <= lines, `${label}: line ${p.line} of ${lines}`);
        assert.equal(typeof p.message, 'string');
      }
      const ids = new Set<string>();
      for (const e of r.entries) {
        assert.ok(isValidDeviceId(e.id), `${label}: id ${JSON.stringify(e.id)}`);
        assert.ok(!ids.has(e.id), `${label}: duplicate ${e.id}`);
        ids.add(e.id);
        assert.ok(e.pk || e.mac || e.secret !== undefined, label);
        if (e.pk) assert.equal(e.pk.length, 32, label);
        if (e.mac) assert.ok(e.mac.length === 6 || e.mac.length === 8, label);
        if (e.secret !== undefined) assert.ok([...e.secret].length >= 12, label);
        assert.ok(e.type === 0 || e.type === 1 || e.type === 2, label);
        if (e.expires !== undefined) assert.ok(Number.isInteger(e.expires), label);
      }
    }

    for (const [name, count, seed] of [
      // Counts are modest because each PEM key costs ~2 ms in OpenSSL 3.
      ['good.csv', 1000, 101],
      ['good.json', 400, 202],
      ['bad-row.csv', 200, 303],
    ] as const) {
      it(`never throws on ${count} seeded byte mutations of ${name} and always returns a consistent parse result`, () => {
        const original = Buffer.from(fixture(name), 'utf8');
        const rnd = prng(seed);
        let withErrors = 0;
        for (let i = 0; i < count; i++) {
          const text = mutate(original, rnd).toString(rnd() < 0.5 ? 'utf8' : 'latin1');
          let r: AllowlistParse;
          try {
            r = parse(text);
          } catch (e) {
            assert.fail(`${name} mutation #${i} threw ${String(e)}`);
          }
          checkResult(r, text, `${name} mutation #${i}`);
          if (r.errors.length) withErrors++;
        }
        assert.ok(withErrors > 0);
      });
    }

    it('never throws on random text that looks like CSV or JSON', () => {
      const rnd = prng(404);
      const alphabet = ['"', ',', '\n', '\r', '#', '[', ']', '{', '}', ':', 'id', 'pk', 'mac', 'secret', 'a', '0', ' ', '\\', '-'];
      for (let i = 0; i < 2000; i++) {
        const text = Array.from({ length: Math.floor(rnd() * 80) }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join('');
        checkResult(parse(text), text, JSON.stringify(text));
      }
    });
  });
});
