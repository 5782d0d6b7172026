/** The output helpers of `oob` (tools/oob/format.ts) and its connection settings (tools/oob/client.ts). */
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT, OobError, resolveConnection } from '../../../tools/oob/client.ts';
import { ProgressBar, bytes, eventLine, plural, table } from '../../../tools/oob/format.ts';
import { tempDir } from '../../support/temp-dir.ts';

describe('oob output helpers', () => {
  it('aligns a table under upper-case headers, with - for empty cells and no trailing spaces', () => {
    const t = table(
      [
        { id: 'a', fp: 'Xk3a-91Qz-Lm0P', mac: undefined },
        { id: 'longer-id', fp: undefined, mac: 'aa:bb:cc:dd:ee:ff' },
      ],
      [
        { header: 'id', get: (r) => r.id },
        { header: 'fingerprint', get: (r) => r.fp },
        { header: 'mac', get: (r) => r.mac },
      ],
    );
    assert.equal(t, ['ID         FINGERPRINT     MAC', 'a          Xk3a-91Qz-Lm0P  -', 'longer-id  -               aa:bb:cc:dd:ee:ff'].join('\n'));
  });

  it('prints an event as one line with its detail as key=value', () => {
    const line = eventLine({ seq: 12, at: '2026-11-26T14:24:56.000Z', kind: 'admin.revoke', deviceId: 'dev-1', actor: 'admin:alice', source: '127.0.0.1', detail: { reason: 'lost in the field', n: 2 } });
    assert.equal(line, '#12 2026-11-26 14:24:56Z admin.revoke dev-1 by admin:alice from 127.0.0.1 reason="lost in the field" n=2');
  });

  it('prints the times of an event\'s detail (exp of an issued token) as ISO 8601 UTC, not epoch seconds', () => {
    const line = eventLine({ seq: 3, at: '2026-11-26T14:24:56.000Z', kind: 'refresh.issued', deviceId: 'dev-1', actor: 'device', detail: { cti: 'ab12', exp: 1795790696 } });
    assert.equal(line, '#3 2026-11-26 14:24:56Z refresh.issued dev-1 by device cti=ab12 exp=2026-11-27T14:44:56Z');
    assert.doesNotMatch(line, /1795790696/);
  });

  it('says 1 row but 0 and 2 rows', () => {
    assert.deepEqual([plural(0, 'row'), plural(1, 'row'), plural(2, 'row'), plural(1, 'entry', 'entries'), plural(3, 'entry', 'entries')], ['0 rows', '1 row', '2 rows', '1 entry', '3 entries']);
  });

  it('formats byte counts in binary units', () => {
    assert.deepEqual([bytes(0), bytes(1023), bytes(1536), bytes(10 * 1024 * 1024)], ['0 B', '1023 B', '1.5 KiB', '10 MiB']);
  });

  it('draws the progress bar on one redrawn line on a terminal, at most every 100 ms but always at 100 %', () => {
    let now = 0;
    const w: string[] = [];
    const bar = new ProgressBar({ write: (s) => w.push(s), isTTY: true, columns: 80 }, 'up', 1000, () => now);
    bar.update(0);
    now = 50;
    bar.update(500);
    now = 150;
    bar.update(600);
    bar.update(1000);
    bar.finish('done');
    assert.equal(w.length, 4);
    assert.ok(w.slice(0, 3).every((s) => s.startsWith('\rup [')));
    assert.match(w[0]!, / {2}0% 0 B\/1000 B/);
    assert.match(w[1]!, / 60% 600 B\/1000 B/);
    assert.match(w[2]!, /100% 1000 B\/1000 B/);
    assert.equal(w[3], ' done\n');
  });

  it('prints a line per quarter instead of redrawing when stderr is not a terminal', () => {
    const w: string[] = [];
    const bar = new ProgressBar({ write: (s) => w.push(s), isTTY: false }, 'up', 100);
    for (let i = 0; i <= 100; i += 5) bar.update(i);
    assert.deepEqual(
      w.map((s) => s.trim()),
      ['up   0% (0 B of 100 B)', 'up  25% (25 B of 100 B)', 'up  50% (50 B of 100 B)', 'up  75% (75 B of 100 B)', 'up 100% (100 B of 100 B)'],
    );
  });
});

describe('oob connection settings', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => {
    tmp = tempDir('idprov-oob-conn-');
  });
  afterEach(() => tmp.cleanup());

  it('prefers --server over IDPROV_ADMIN_URL over http://127.0.0.1:8445', () => {
    assert.equal(resolveConnection({ server: 'http://127.0.0.1:9000/', token: 't' }, { IDPROV_ADMIN_URL: 'http://127.0.0.1:9001' }).baseUrl, 'http://127.0.0.1:9000');
    assert.equal(resolveConnection({ token: 't' }, { IDPROV_ADMIN_URL: '127.0.0.1:9001' }).baseUrl, 'http://127.0.0.1:9001');
    assert.equal(resolveConnection({ token: 't' }, {}).baseUrl, 'http://127.0.0.1:8445');
  });

  it('takes the token from --token, then --token-file, then IDPROV_ADMIN_TOKEN, then <data>/admin.token', () => {
    const file = join(tmp.dir, 'tok');
    writeFileSync(file, 'from-file\n');
    const data = join(tmp.dir, 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'admin.token'), 'from-data\n');
    const env = { IDPROV_ADMIN_TOKEN: 'from-env' };
    assert.equal(resolveConnection({ token: 'from-flag', tokenFile: file, data }, env).token, 'from-flag');
    assert.equal(resolveConnection({ tokenFile: file, data }, env).token, 'from-file');
    assert.equal(resolveConnection({ data }, env).token, 'from-env');
    assert.equal(resolveConnection({ data }, {}).token, 'from-data');
    assert.equal(resolveConnection({}, { IDPROV_DATA: data }).token, 'from-data');
  });

  it('reports a missing token, an unreadable token file or a bad URL as a usage error', () => {
    const usage = (f: () => unknown, re: RegExp) =>
      assert.throws(f, (e: unknown) => e instanceof OobError && e.exitCode === EXIT.usage && re.test(e.message));
    usage(() => resolveConnection({ data: join(tmp.dir, 'none') }, {}), /no admin token/);
    usage(() => resolveConnection({ tokenFile: join(tmp.dir, 'missing') }, {}), /cannot read the token file .*ENOENT/);
    usage(() => resolveConnection({ server: 'ftp://x', token: 't' }, {}), /unsupported scheme/);
  });
});
