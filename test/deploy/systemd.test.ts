/**
 * deploy/idprov.service: systemd accepts it (`systemd-analyze verify`, with no warning either), it
 * carries the hardening docs/operations.md promises, and `systemd-analyze security` rates it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const UNIT = new URL('../../deploy/idprov.service', import.meta.url).pathname;
const text = readFileSync(UNIT, 'utf8');
/** Every `Key=value` of the unit (a key may repeat). */
const settings = text
  .split('\n')
  .filter((l) => /^[A-Za-z]+=/.test(l))
  .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const);
const values = (k: string): string[] => settings.filter(([key]) => key === k).map(([, v]) => v);
const analyze = spawnSync('systemd-analyze', ['--version']);

describe('the systemd unit deploy/idprov.service', () => {
  it('runs as a transient user with its state in /var/lib/idprov and no new privileges', () => {
    assert.deepEqual(values('DynamicUser'), ['yes']);
    assert.deepEqual(values('StateDirectory'), ['idprov']);
    assert.deepEqual(values('NoNewPrivileges'), ['yes']);
    assert.deepEqual(values('CapabilityBoundingSet'), [''], 'no capability: ports >= 1024');
    assert.deepEqual(values('ProtectSystem'), ['strict']);
    assert.deepEqual(values('ProtectHome'), ['yes']);
    assert.deepEqual(values('PrivateTmp'), ['yes']);
    assert.deepEqual(values('RestrictAddressFamilies'), ['AF_INET AF_INET6 AF_UNIX AF_NETLINK']);
    assert.ok(values('SystemCallFilter').includes('@system-service'));
    assert.match(values('ExecStart')[0] ?? '', /idprov serve --config \/etc\/idprov\/idprov\.json$/);
  });

  it('does not set MemoryDenyWriteExecute, which Node\'s JIT cannot run under', () => {
    assert.deepEqual(values('MemoryDenyWriteExecute'), []);
  });

  it('limits glibc malloc to two arenas (docs/operations.md "systemd": less resident memory kept after bursts)', () => {
    assert.ok(values('Environment').includes('MALLOC_ARENA_MAX=2'), values('Environment').join(', '));
  });

  it('does not restart on the exit codes of problems an operator must fix (2-6)', () => {
    assert.deepEqual(values('RestartPreventExitStatus'), ['2 3 4 5 6']);
  });

  it('passes systemd-analyze verify without a warning', function () {
    if (analyze.error) this.skip(); // systemd-analyze missing: npm run test:setup installs the systemd package
    const r = spawnSync('systemd-analyze', ['verify', UNIT], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'systemd reports nothing about the unit');
  });

  it('is rated OK (exposure at most 2.0 of 10) by systemd-analyze security', function () {
    if (analyze.error) this.skip();
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', '--threshold=20', UNIT], { encoding: 'utf8' });
    const level = /Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout + r.stderr);
    assert.ok(level, r.stdout + r.stderr);
    assert.ok(Number(level[1]) <= 2.0, `exposure ${level[1]}`);
    assert.equal(r.status, 0);
  });
});
