/**
 * Allowlist parsers (CSV and JSON). Oracle: parseAllowlist never throws (bad rows are reported as
 * errors with line numbers), and the streaming AllowlistReader fed the same text in pieces — split at
 * points drawn from the input itself — reports the same entries, errors and warnings as the whole text
 * at once (the upload path streams; `oob import` and the tests parse whole files).
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { AllowlistReader, parseAllowlist } from '../../../src/protocol/allowlist.ts';
import { check, tokens, type Target } from '../target.ts';
import { same } from './compare.ts';
import { fileBytes } from './fixtures.ts';

const OPTS = { now: 1_800_000_000 };

function run(input: Buffer): void {
  const text = input.toString('utf8');
  const whole = parseAllowlist(text, OPTS);
  const r = new AllowlistReader(OPTS);
  const entries = [];
  for (let pos = 0, k = 0; pos < text.length; k++) {
    const n = 1 + (input[k % input.length]! % 97);
    entries.push(...r.push(text.slice(pos, pos + n)));
    pos += n;
  }
  entries.push(...r.end());
  // After a structural error nothing of the file is imported (the reader's `fatal`): the entries
  // streamed before it are discarded by every consumer, and the whole text yields none.
  if (r.fatal) check(whole.entries.length === 0, 'a structural error stops the streamed reading, but the whole text still gives entries');
  else check(same(whole.entries, entries), 'streamed in pieces, the allowlist gives other entries than parsed whole');
  check(same(whole.errors, r.errors), 'streamed in pieces, the allowlist gives other errors than parsed whole');
  check(same(whole.warnings, r.warnings), 'streamed in pieces, the allowlist gives other warnings than parsed whole');
}

/** A fixed Ed25519 key (PKCS#8 of a constant seed), so that the dictionary is the same on every run. */
const PEM = createPublicKey(createPrivateKey({ key: Buffer.from('302e020100300506032b657004220420' + '42'.repeat(32), 'hex'), format: 'der', type: 'pkcs8' }))
  .export({ type: 'spki', format: 'pem' })
  .toString();
const COMMON = tokens(',', '\n', '\r\n', '\r', '"', '""', '#', '\uFEFF', ' ', 'device', 'service', 'consumer', '2', '2030-01-01', '2030-01-01T00:00:00Z', '2030-01-01T00:00:00+02:00', '1893456000', '24:0a:c4:12:34:01', '240ac4123401aabb', '78d941bab1dfa8081e11a92bd95ba4b4abb4bbea08e7878cf6620cf91dca3449', 'secret-longer-than-16', 'short', PEM, '-----BEGIN PRIVATE KEY-----', 'é', '\u0000', '\u2028');

const csv: Target = {
  name: 'allowlist-csv',
  about: 'parseAllowlist on CSV never throws; streamed in pieces it reports the same entries, errors and warnings',
  watch: ['/src/protocol/allowlist.ts'],
  maxLen: 8192,
  dictionary: [...COMMON, ...tokens('id,pk,mac,secret,type,expires\n', 'id,mac\n', 'ID, PK ,Mac\n', 'dev-1,', ',,,,,\n', '"a\nb"', '"a""b"')],
  cbor: false,
  seeds: () => [fileBytes('allowlists/good.csv'), fileBytes('allowlists/bad-row.csv'), Buffer.from('id,pk\ndev-1,78d941bab1dfa8081e11a92bd95ba4b4abb4bbea08e7878cf6620cf91dca3449\n"dev-2","' + PEM.replace(/\n/g, '\n') + '"\n')],
  run,
};

const json: Target = {
  name: 'allowlist-json',
  about: 'parseAllowlist on JSON never throws; streamed in pieces it reports the same entries, errors and warnings',
  watch: ['/src/protocol/allowlist.ts'],
  maxLen: 8192,
  dictionary: [...COMMON, ...tokens('[', ']', '{', '}', ':', '"id"', '"pk"', '"mac"', '"secret"', '"type"', '"expires"', 'null', 'true', '1e999', '-0', '"\\u0000"', '[{"id":"x","mac":"24:0a:c4:12:34:01"}]', '{"id":"d","secret":"0123456789abcdef"},')],
  cbor: false,
  seeds: () => [fileBytes('allowlists/good.json'), Buffer.from('[{"id":"a","pk":' + JSON.stringify(PEM) + '}]'), Buffer.from('[\n  {"id": "x", "type": 1, "expires": 1893456000, "mac": "24:0a:c4:12:34:01"},\n  7\n]')],
  run,
};

export const ALLOWLIST_TARGETS = [csv, json];
