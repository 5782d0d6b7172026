/**
 * The C library's host CLI (device/examples/host/idprov-device.c, built by CMake) against the real
 * server on 127.0.0.1: allowlisted key, MAC, OOB secret, an unknown device pending until `oob approve`,
 * a sealed token opened and verified against /idprov/keys, refresh, a revoked device, a rate-limited
 * device that backs off, key files shared with device-sim, and a server killed and restarted mid-flow.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { decodeKeySet } from '../../src/protocol/cwt.ts';
import { parseSign1 } from '../../src/protocol/cose.ts';
import { keyFingerprint } from '../../src/tokens/ed25519.ts';
import { tempDir } from '../support/temp-dir.ts';
import { coapRequest } from '../support/coap-client.ts';
import { startAdminServer, type AdminFixture } from '../support/admin-server.ts';
import { ROOT, hostBuild } from '../support/c-library.ts';
import { ServerChild } from '../support/server-process.ts';

const run = promisify(execFile);
const host = hostBuild();
const CLI = join(host.dir, 'idprov-device');
const OOB = join(ROOT, 'bin/oob.js');
const DEVICE_SIM = join(ROOT, 'bin/device-sim.js');

interface Out {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

/** Runs idprov-device (or another binary) and parses its last JSON line. */
async function cli(args: string[], o: { env?: Record<string, string>; bin?: string[] } = {}): Promise<Out> {
  const [cmd, ...pre] = o.bin ?? [CLI];
  try {
    const r = await run(cmd!, [...pre, ...args], { env: { PATH: process.env['PATH'] ?? '', ...o.env }, timeout: 120_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr, json: lastJson(r.stdout) };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : -1, stdout: x.stdout ?? '', stderr: x.stderr ?? String(e), json: lastJson(x.stdout ?? '') };
  }
}
function lastJson(s: string): Record<string, unknown> {
  const l = s.trim().split('\n').filter((x) => x.startsWith('{')).pop();
  return l ? (JSON.parse(l) as Record<string, unknown>) : {};
}
const show = (r: Out) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;

describe('idprov-device (C library) end to end against the real server on loopback', function () {
  this.timeout(120_000);
  let f: AdminFixture;
  let tmp: ReturnType<typeof tempDir>;
  let server: string[];
  let n = 0;
  const id = () => `c-dev-${process.pid}-${++n}`;

  before(async function () {
    assert.equal(host.error, undefined, host.error);
    f = await startAdminServer('cdev', { pendingRetryInitial: 1, pendingRetryStep: 0 });
    tmp = tempDir('idprov-cdev-');
    server = ['--server', `coap://127.0.0.1:${f.server.coapPort}`];
  });
  after(async () => {
    await f?.close();
    tmp?.cleanup();
  });

  /** A fresh key file made by the C CLI; returns its path and public key. */
  async function keyFile(): Promise<{ key: string; pk: Buffer; fingerprint: string }> {
    const key = join(tmp.dir, `${id()}.key`);
    const r = await cli(['keygen', '--key', key, '--json']);
    assert.equal(r.code, 0, show(r));
    return { key, pk: Buffer.from(String(r.json['pk']), 'hex'), fingerprint: String(r.json['fingerprint']) };
  }

  it('gives an allowlisted key a token in two round trips, stored next to the key file', async () => {
    const dev = id();
    const k = await keyFile();
    await f.allow({ id: dev, pk: k.pk });
    const r = await cli(['provision', ...server, '--id', dev, '--key', k.key, '--json']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.json['status'], 'approved');
    assert.equal(r.json['code'], '2.01');
    assert.equal(r.json['attempts'], 2);
    assert.equal(r.json['roundTrips'], 2);
    assert.equal(r.json['fingerprint'], keyFingerprint(k.pk));
    const claims = r.json['claims'] as Record<string, unknown>;
    assert.equal(claims['sub'], dev);
    assert.equal(claims['cnf'], k.pk.toString('hex'));
    assert.equal(r.json['ttl'], 3600);
    assert.deepEqual(readFileSync(`${k.key}.token`), Buffer.from(String(r.json['token']), 'hex'));
  });

  it('proves the MAC of a MAC-only entry, and is refused with mac-mismatch for another MAC', async () => {
    const dev = id();
    await f.allow({ id: dev, mac: Buffer.from('240ac4123456', 'hex') });
    const bad = await cli(['provision', ...server, '--id', dev, '--mac', '24:0a:c4:12:34:57', '--json']);
    assert.equal(bad.code, 3, show(bad));
    assert.equal(bad.json['errName'], 'mac-mismatch');
    const dev2 = id();
    await f.allow({ id: dev2, mac: Buffer.from('240ac4123456', 'hex') });
    const ok = await cli(['provision', ...server, '--id', dev2, '--mac', '24:0a:c4:12:34:56', '--json']);
    assert.equal(ok.code, 0, show(ok));
    assert.equal(ok.json['status'], 'approved');
  });

  it('proves an out-of-band secret (flag or IDPROV_OOB_SECRET), and a wrong one gets oob-mismatch', async () => {
    const dev = id();
    await f.allow({ id: dev, secret: 'label-code-7Q4K-x' });
    const bad = await cli(['provision', ...server, '--id', dev, '--secret', 'label-code-7Q4K-y', '--json']);
    assert.equal(bad.code, 3, show(bad));
    assert.equal(bad.json['errName'], 'oob-mismatch');
    assert.equal(bad.json['code'], '4.01');
    const ok = await cli(['provision', ...server, '--id', dev, '--json'], { env: { IDPROV_OOB_SECRET: 'label-code-7Q4K-x' } });
    assert.equal(ok.code, 0, show(ok));
    assert.equal(ok.json['status'], 'approved');
  });

  it('waits while pending and is provisioned once an admin runs `oob approve` with its fingerprint', async () => {
    const dev = id();
    const k = await keyFile();
    const first = await cli(['provision', ...server, '--id', dev, '--key', k.key, '--json']);
    assert.equal(first.code, 2, show(first));
    assert.equal(first.json['status'], 'pending');
    assert.equal(first.json['code'], '2.05');
    assert.equal(first.json['retry'], 1);
    // a device that keeps polling (--wait); the admin approves once it has been told to wait again
    const proc = spawn(CLI, ['provision', ...server, '--id', dev, '--key', k.key, '--wait', '--max-wait', '60', '--json', '-v']);
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    const exited = new Promise<number>((res) => proc.once('exit', (c) => res(c ?? -1)));
    const told = new Promise<void>((res) =>
      proc.stderr.on('data', (d) => {
        stderr += d;
        if (stderr.includes('← 2.05')) res();
      }),
    );
    await Promise.race([told, exited]);
    const tokenFile = join(tmp.dir, 'admin.token');
    writeFileSync(tokenFile, `${f.adminToken}\n`, { mode: 0o600 });
    const approve = await cli(['--server', f.base, '--token-file', tokenFile, 'approve', dev, '--fingerprint', k.fingerprint, '--yes'], { bin: [process.execPath, OOB] });
    assert.equal(approve.code, 0, show(approve));
    assert.equal(await exited, 0, `${stdout}\n${stderr}`);
    const r = lastJson(stdout);
    assert.equal(r['status'], 'approved');
    assert.equal((r['claims'] as Record<string, unknown>)['cnf'], k.pk.toString('hex'));
    assert.ok(stderr.indexOf('← 2.05') < stderr.indexOf('← 2.01'), stderr);
  });

  it('opens a sealed token and verifies its signature against /idprov/keys', async () => {
    const dev = id();
    const k = await keyFile();
    await f.allow({ id: dev, pk: k.pk });
    const r = await cli(['provision', ...server, '--id', dev, '--key', k.key, '--seal', '--verify', '--block-size', '16', '--json', '-v']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.json['sealed'], true);
    assert.equal(r.json['verified'], true);
    // the 52-byte key set came in 16-byte Block2 blocks: 2 POSTs + 4 GETs
    const dgrams = Number(/coap: (\d+) datagrams out/.exec(r.stderr)?.[1]);
    assert.equal(dgrams, 6, r.stderr);
    // the kid the C library verified with is the server's: read /idprov/keys with the server's own decoder
    const keys = decodeKeySet((await coapRequest({ port: f.server.coapPort, method: 'GET', path: '/idprov/keys' })).payload);
    assert.ok(keys.some((x) => Buffer.from(x.kid).toString('hex') === r.json['kid']), JSON.stringify(r.json));
    const s = parseSign1(Buffer.from(String(r.json['token']), 'hex'));
    assert.equal(Buffer.from(s.kid!).toString('hex'), r.json['kid']);
  });

  it('refreshes its token (one challenge, then a token of tokenTtl), and device-sim refreshes the same files', async () => {
    const dev = id();
    const k = await keyFile();
    await f.allow({ id: dev, pk: k.pk });
    const p = await cli(['provision', ...server, '--id', dev, '--key', k.key, '--json']);
    assert.equal(p.code, 0, show(p));
    const r = await cli(['refresh', ...server, '--id', dev, '--key', k.key, '--json']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.json['op'], 'refresh');
    assert.equal(r.json['attempts'], 2);
    assert.equal(r.json['ttl'], 30 * 24 * 3600);
    assert.notEqual(r.json['token'], p.json['token']);
    assert.deepEqual(readFileSync(`${k.key}.token`), Buffer.from(String(r.json['token']), 'hex'));
    // the same key file and token, refreshed by the TypeScript simulator
    const sim = await cli(['refresh', ...server, '--id', dev, '--key', k.key, '--json'], { bin: [process.execPath, DEVICE_SIM] });
    assert.equal(sim.code, 0, show(sim));
    assert.equal(sim.json['status'], 'approved');
  });

  it('provisions with a key file made by device-sim keygen', async () => {
    const dev = id();
    const key = join(tmp.dir, `${dev}.key`);
    const g = await cli(['keygen', '--key', key, '--json'], { bin: [process.execPath, DEVICE_SIM] });
    assert.equal(g.code, 0, show(g));
    const fp = await cli(['fingerprint', '--key', key, '--json']);
    assert.equal(fp.json['fingerprint'], g.json['fingerprint']);
    assert.equal(fp.json['pk'], g.json['pk']);
    assert.equal(fp.json['xk'], g.json['xk']);
    await f.allow({ id: dev, pk: Buffer.from(String(g.json['pk']), 'hex') });
    const r = await cli(['provision', ...server, '--id', dev, '--key', key, '--seal', '--json']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.json['sealed'], true);
  });

  it('is refused with revoked once an admin revokes it, on refresh and on a new request', async () => {
    const dev = id();
    const k = await keyFile();
    await f.allow({ id: dev, pk: k.pk });
    assert.equal((await cli(['provision', ...server, '--id', dev, '--key', k.key])).code, 0);
    await f.server.admin.revoke(dev, 'lost', { by: 'test' });
    const r = await cli(['refresh', ...server, '--id', dev, '--key', k.key, '--json']);
    assert.equal(r.code, 3, show(r));
    assert.equal(r.json['errName'], 'revoked');
    assert.equal(r.json['code'], '4.03');
    const p = await cli(['provision', ...server, '--id', dev, '--key', k.key, '--json']);
    assert.equal(p.code, 3, show(p));
    assert.equal(p.json['errName'], 'revoked');
  });

  it('provisions (sealed, verified) and refreshes under valgrind without an invalid access or a leak', async () => {
    const dev = id();
    const k = await keyFile();
    await f.allow({ id: dev, pk: k.pk });
    const vg = ['valgrind', '-q', '--error-exitcode=97', '--leak-check=full', '--errors-for-leak-kinds=all', CLI];
    const p = await cli(['provision', ...server, '--id', dev, '--key', k.key, '--seal', '--verify', '--json'], { bin: vg });
    assert.equal(p.code, 0, show(p));
    assert.equal(p.json['verified'], true);
    const r = await cli(['refresh', ...server, '--id', dev, '--key', k.key, '--json'], { bin: vg });
    assert.equal(r.code, 0, show(r));
  });

  it('refuses an ID outside the contract before sending anything (exit 1, usage)', async () => {
    const r = await cli(['provision', ...server, '--id', 'x'.repeat(65), '--json']);
    assert.equal(r.code, 1, show(r));
    assert.equal(r.json['error'], 'usage');
  });

  it('provisions over coaps:// with DTLS-PSK through mbedTLS 2.28 (identity = the device ID; no OOB proof in the body)', async () => {
    const dev = id();
    const k = await keyFile();
    await f.allow({ id: dev, secret: 'printed-secret-42x', pk: k.pk });
    const coaps = ['--server', `coaps://127.0.0.1:${f.server.coapsPort}`];
    const r = await cli(['provision', ...coaps, '--id', dev, '--key', k.key, '--psk', 'printed-secret-42x', '--seal', '--verify', '--json']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.json['status'], 'approved');
    assert.equal(r.json['sealed'], true);
    assert.equal(r.json['verified'], true);
    const refreshed = await cli(['refresh', ...coaps, '--id', dev, '--key', k.key, '--psk', 'printed-secret-42x', '--json']);
    assert.equal(refreshed.code, 0, show(refreshed));
    const wrong = await cli(['provision', ...coaps, '--id', dev, '--key', k.key, '--psk', 'not-the-secret-000', '--timeout', '5000', '--json']);
    assert.equal(wrong.code, 1, show(wrong));
    assert.equal(wrong.json['error'], 'transport');
  });

  describe('a rate-limited device', () => {
    // The server's clock stands still unless the test moves it, so its token buckets refill only when
    // told to: no timing assumption about how fast the CLI runs.
    let g: AdminFixture;
    let clockMs = Date.now();
    before(async () => {
      g = await startAdminServer('crl', { rateLimitDevice: 1, rateBurstDevice: 1 }, () => clockMs);
    });
    after(async () => {
      await g?.close();
    });

    it('is told 4.29 with a retry hint, and with --wait backs off that long and then succeeds', async () => {
      const dev = id();
      const k = await keyFile();
      await g.allow({ id: dev, pk: k.pk });
      const srv = ['--server', `coap://127.0.0.1:${g.server.coapPort}`];
      assert.equal((await cli(['provision', ...srv, '--id', dev, '--key', k.key])).code, 0);
      const limited = await cli(['provision', ...srv, '--id', dev, '--key', k.key, '--json']);
      assert.equal(limited.code, 3, show(limited));
      assert.equal(limited.json['errName'], 'rate-limited');
      assert.equal(limited.json['code'], '4.29');
      const retry = Number(limited.json['retry']);
      assert.ok(retry >= 1, show(limited));
      // --wait: the device sleeps the hint; the test lets the server's time pass once it saw the 4.29
      const proc = spawn(CLI, ['provision', ...srv, '--id', dev, '--key', k.key, '--wait', '--max-wait', '60', '--json', '-v']);
      let stderr = '';
      let stdout = '';
      proc.stdout.on('data', (d) => (stdout += d));
      const exited = new Promise<number>((res) => proc.once('exit', (c) => res(c ?? -1)));
      const saw429 = new Promise<void>((res) =>
        proc.stderr.on('data', (d) => {
          stderr += d;
          if (stderr.includes('← 4.29')) res();
        }),
      );
      const t0 = Date.now();
      await Promise.race([saw429, exited]);
      clockMs += 10_000;
      assert.equal(await exited, 0, `${stdout}\n${stderr}`);
      assert.equal(lastJson(stdout)['status'], 'approved');
      const i429 = stderr.indexOf('← 4.29');
      assert.ok(i429 >= 0 && stderr.indexOf('← 2.01') > i429, stderr);
      assert.ok(Date.now() - t0 >= retry * 1000, 'it slept the retry hint before asking again');
    });
  });

  describe('a server killed and restarted while the device waits', () => {
    it('reaches the restarted server by retransmission and is provisioned by the approval made there', async () => {
      const dataDir = join(tmp.dir, 'crash-data');
      const flags = { dataDir, bind: '127.0.0.1', coapPort: 0, coapsPort: 0, adminPort: 0, mdns: false, logLevel: 'silent', pendingRetryInitial: 1, pendingRetryStep: 0 };
      const a = await ServerChild.start(flags);
      try {
        const dev = id();
        const k = await keyFile();
        const proc = spawn(CLI, ['provision', '--server', `coap://127.0.0.1:${a.port}`, '--id', dev, '--key', k.key, '--wait', '--max-wait', '90', '--ack-timeout', '500', '--json', '-v']);
        let stderr = '';
        let stdout = '';
        proc.stdout.on('data', (d) => (stdout += d));
        const exited = new Promise<number>((res) => proc.once('exit', (c) => res(c ?? -1)));
        const pending = new Promise<void>((res) =>
          proc.stderr.on('data', (d) => {
            stderr += d;
            if (stderr.includes('← 2.05')) res();
          }),
        );
        // wait for its first pending answer, then kill the server under it
        await Promise.race([pending, exited]);
        assert.ok(stderr.includes('← 2.05'), stderr);
        await a.kill9();
        await new Promise((r) => setTimeout(r, 1500));
        const b = await ServerChild.start({ ...flags, coapPort: a.port });
        try {
          await b.admin('approve', dev, { fingerprint: k.fingerprint }, { by: 'test' });
          const code = await exited;
          assert.equal(code, 0, `${stdout}\n${stderr}`);
          assert.equal(lastJson(stdout)['status'], 'approved');
          assert.match(stderr, /[1-9]\d* retransmissions/);
        } finally {
          b.proc.kill('SIGKILL');
        }
      } finally {
        a.proc.kill('SIGKILL');
      }
    });
  });
});

