/**
 * Several idprov instances on one PostgreSQL database (issue 16, docs/scale-out.md): each test starts
 * real servers (src/server.ts, in this process, each with its own data directory and ports) on a fresh
 * database of a private PostgreSQL (test/support/postgres.ts) and checks that what one instance
 * commits holds on every other.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { parseResponse, type ResponseBody } from '../../src/protocol/messages.ts';
import { parseSign1 } from '../../src/protocol/cose.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { PostgresStore } from '../../src/store/postgres/store.ts';
import { keyFingerprint } from '../../src/tokens/ed25519.ts';
import { tempDir } from '../support/temp-dir.ts';
import { coapRequest } from '../support/coap-client.ts';
import { TestDevice } from '../support/device.ts';
import { TestPostgres } from '../support/postgres.ts';
import { readSse } from '../support/admin-server.ts';
import { coapPost, coapReply } from '../support/dtls-server.ts';
import { DtlsClient, HandshakeError } from '../../tools/dtls-peers/client.ts';

async function post(port: number, path: string, payload: Buffer): Promise<{ code: string; body: ResponseBody; maxAge?: number }> {
  const r = await coapRequest({ port, method: 'POST', path, payload, contentFormat: 18 });
  return { code: r.code, body: parseResponse(r.payload), ...(r.maxAge !== undefined ? { maxAge: r.maxAge } : {}) };
}

/** A fresh nonce for `dev` from the instance on `port`. */
async function nonceFrom(port: number, dev: TestDevice): Promise<Uint8Array> {
  const ch = await post(port, '/idprov/request', dev.request());
  assert.equal(ch.code, '4.01');
  return ch.body.nonce!;
}

async function provision(port: number, dev: TestDevice, nonce?: Uint8Array) {
  return post(port, '/idprov/request', dev.request({ nonce: nonce ?? (await nonceFrom(port, dev)) }));
}

async function refresh(port: number, dev: TestDevice, token: Uint8Array) {
  const ch = await post(port, '/idprov/refresh', dev.refresh(token));
  return post(port, '/idprov/refresh', dev.refresh(token, ch.body.nonce!));
}

/** Polls `check` (bounded: at most `tries` × 100 ms) until it returns true. */
async function eventually(check: () => Promise<boolean>, tries = 100): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

describe('instances sharing one PostgreSQL database', function () {
  this.timeout(120_000);
  let pg: TestPostgres;
  const t = tempDir('idprov-scale-');
  let servers: RunningServer[] = [];
  let n = 0;

  before(async () => {
    pg = await TestPostgres.start();
  });
  after(async () => {
    await pg?.stop();
    t.cleanup();
  });
  afterEach(async () => {
    await Promise.all(servers.map((s) => s.close().catch(() => undefined)));
    servers = [];
  });

  /** `count` instances on one fresh database; the first imports `allowlist` (CSV) if given. */
  async function cluster(count: number, allowlist?: string, extra: Record<string, unknown> = {}, clock?: () => number): Promise<RunningServer[]> {
    const url = pg.createDatabase('scale');
    const log = createLogger(process.env['CHILD_LOG'] ?? 'silent', 2);
    for (let i = 0; i < count; i++) {
      const dataDir = join(t.dir, `i${n++}`);
      let allowFile: string | undefined;
      if (i === 0 && allowlist !== undefined) {
        allowFile = join(t.dir, `allow-${n}.csv`);
        (await import('node:fs')).writeFileSync(allowFile, allowlist);
      }
      const cfg = loadConfig({
        env: {},
        flags: { dataDir, store: 'postgres', databaseUrl: url, coapPort: 0, coapsPort: 0, adminPort: 0, bind: '127.0.0.1', mdns: false, instanceName: `scale-${n}`, ...extra, ...(allowFile ? { allowlist: allowFile } : {}) },
      });
      servers.push(await startServer(cfg, log, clock));
    }
    return servers;
  }

  it('shares one nonce secret and one token key set created by the first instance', async () => {
    const [a, b] = await cluster(2);
    assert.equal(a!.keyring.current.kid, b!.keyring.current.kid);
    const dev = new TestDevice('shared-secret');
    // A nonce minted by A is valid at B (it is checked with the shared secret).
    const viaB = await post(b!.coapPort, '/idprov/request', dev.request({ nonce: await nonceFrom(a!.coapPort, dev) }));
    assert.equal(viaB.code, '2.05', 'pending (not a nonce challenge): B accepted A\'s nonce');
  });

  it('consumes an allowlist entry exactly once when two instances race for it', async () => {
    const devs = Array.from({ length: 10 }, (_, i) => new TestDevice(`race-${i}`));
    const [a, b] = await cluster(2, `id,pk\n${devs.map((d) => `${d.id},${d.pk.toString('hex')}`).join('\n')}\n`);
    for (const dev of devs) {
      const [na, nb] = await Promise.all([nonceFrom(a!.coapPort, dev), nonceFrom(b!.coapPort, dev)]);
      const results = await Promise.all([provision(a!.coapPort, dev, na), provision(b!.coapPort, dev, nb)]);
      assert.ok(results.some((r) => r.code === '2.01'), `${dev.id}: at least one token`);
      const approvals = (await a!.store.listEvents(0, 1000)).filter((e) => e.deviceId === dev.id && e.kind === 'provision.approved');
      const viaAllowlist = approvals.filter((e) => (e.detail as { via?: string } | undefined)?.via === 'allowlist');
      assert.equal(viaAllowlist.length, 1, `${dev.id}: the entry was spent once (${JSON.stringify(approvals.map((e) => e.detail))})`);
    }
  });

  it('refuses at every other instance a nonce already used at one', async () => {
    const dev = new TestDevice('replay');
    const [a, b, c] = await cluster(3, `id,pk\n${dev.id},${dev.pk.toString('hex')}\n`);
    const nonce = await nonceFrom(a!.coapPort, dev);
    const signed = dev.request({ nonce });
    const first = await post(a!.coapPort, '/idprov/request', signed);
    assert.equal(first.code, '2.01');
    for (const s of [b!, c!, a!]) {
      const replay = await post(s.coapPort, '/idprov/request', signed);
      assert.equal(replay.code, '4.01', `replay at port ${s.coapPort} is challenged`);
      assert.equal(replay.body.err, 3, 'err 3: nonce already used');
    }
  });

  it('lets an approval made through one instance reach a device polling another', async () => {
    const dev = new TestDevice('approve-x');
    const [a, b] = await cluster(2);
    const first = await provision(b!.coapPort, dev);
    assert.equal(first.code, '2.05');
    await a!.admin.approve(dev.id, { fingerprint: keyFingerprint(dev.pk) }, { by: 'admin:test' });
    const again = await provision(b!.coapPort, dev, first.body.nonce!);
    assert.equal(again.code, '2.01', 'B issues the token A approved');
  });

  it('makes a revocation through one instance effective on every instance at once', async () => {
    const dev = new TestDevice('revoke-x');
    const [a, b, c] = await cluster(3, `id,pk\n${dev.id},${dev.pk.toString('hex')}\n`);
    const tok = await provision(c!.coapPort, dev);
    assert.equal(tok.code, '2.01');
    assert.equal((await refresh(b!.coapPort, dev, tok.body.token!)).code, '2.01');
    await a!.admin.revoke(dev.id, 'stolen', { by: 'admin:test' });
    for (const s of [a!, b!, c!]) assert.equal((await refresh(s.coapPort, dev, tok.body.token!)).body.err, 7, `revoked at ${s.coapPort}`);
  });

  it('follows a PSK secret replaced through one instance at every other: the old key stops shaking hands, its sessions prove nothing', async () => {
    const dev = new TestDevice('psk-shared');
    const [a, b] = await cluster(2, `id,secret\n${dev.id},printed-on-the-box-2024\n`);
    await Promise.all([a!.pskIndex.settled(), b!.pskIndex.settled()]);
    const connect = (s: RunningServer, key: string) => DtlsClient.connect({ host: '127.0.0.1', port: s.coapsPort, psk: { identity: dev.id, key: Buffer.from(key) } });
    const session = await connect(b!, 'printed-on-the-box-2024');
    try {
      await a!.admin.putAllow({ id: dev.id, secret: 'relabelled-2025', type: 0, createdAt: a!.service.now() }, { by: 'test' });
      // B hears of it by LISTEN/NOTIFY and reloads its copy; meanwhile its sessions are judged by the
      // committed entry, so the old session proves nothing even before the reload.
      const nonce = parseResponse(coapReply(await session.request(coapPost('/idprov/request', dev.request()))).payload).nonce!;
      const r = coapReply(await session.request(coapPost('/idprov/request', dev.request({ nonce }))));
      assert.equal(r.code, '4.01');
      assert.equal(parseResponse(r.payload).err, 11);
    } finally {
      session.close();
    }
    assert.ok(await eventually(async () => b!.pskIndex.lookup(dev.id)?.toString() === 'relabelled-2025'), 'B reloaded its PSK copy');
    await assert.rejects(connect(b!, 'printed-on-the-box-2024'), (e: unknown) => e instanceof HandshakeError && e.alert === 20);
    const fresh = await connect(b!, 'relabelled-2025');
    fresh.close();
    await a!.admin.deleteAllow(dev.id, { by: 'test' });
    assert.ok(await eventually(async () => b!.pskIndex.lookup(dev.id) === undefined), 'B dropped the removed entry');
    await assert.rejects(connect(b!, 'relabelled-2025'), (e: unknown) => e instanceof HandshakeError && e.alert === 20);
  });

  it('picks up a key rotation made at one instance on every other, which then signs with the new key', async () => {
    const dev = new TestDevice('rotate-x');
    const [a, b] = await cluster(2, `id,pk\n${dev.id},${dev.pk.toString('hex')}\n`);
    const tok = await provision(b!.coapPort, dev);
    const kid = await a!.admin.rotateKey({ by: 'admin:test' });
    assert.ok(await eventually(async () => b!.keyring.current.kid === kid), 'B loads the new key (NOTIFY, else its 10 s poll)');
    const refreshed = await refresh(b!.coapPort, dev, tok.body.token!);
    assert.equal(refreshed.code, '2.01', 'the token signed with the old key still refreshes');
    assert.equal(Buffer.from(parseSign1(refreshed.body.token!).kid!).toString('hex'), kid, 'B signs with the key A created');
  });

  it('picks up a nonce-secret rotation made at one instance on every other, without turning away a device mid-flight', async () => {
    const early = new TestDevice('nonce-rotate-early');
    const late = new TestDevice('nonce-rotate-late');
    const [a, b] = await cluster(2, `id,pk\n${early.id},${early.pk.toString('hex')}\n${late.id},${late.pk.toString('hex')}\n`);
    const before = await a!.store.getSetting('nonce.secret');
    // Nonces handed out before the rotation, by both instances.
    const fromA = await nonceFrom(a!.coapPort, early);
    const fromB = await nonceFrom(b!.coapPort, late);
    const { previousUntil } = await a!.admin.rotateNonceSecret(a!.config.nonceTtl + 30, { by: 'admin:test' });
    const after = await b!.store.getSetting('nonce.secret');
    assert.ok(after && after !== before, 'a new secret is in the database');
    assert.equal(await b!.store.getSetting('nonce.secret.previous'), before, 'the old one is kept as the previous secret');
    assert.ok(previousUntil >= Math.floor(Date.now() / 1000) + a!.config.nonceTtl, 'accepted for one nonce lifetime at least');
    // B picks the rotation up (NOTIFY of A's commit, else its 10 s poll): a nonce A makes now, with the
    // new secret, passes at B.
    assert.ok(
      await eventually(async () => {
        const probe = new TestDevice(`nonce-rotate-probe-${Math.random().toString(36).slice(2, 8)}`);
        return (await post(b!.coapPort, '/idprov/request', probe.request({ nonce: await nonceFrom(a!.coapPort, probe) }))).code === '2.05';
      }),
      'B accepts nonces made with the new secret',
    );
    // The devices mid-flight, whose nonces were made with the old secret, are not turned away, at either instance.
    assert.equal((await provision(b!.coapPort, early, fromA)).code, '2.01', 'a nonce of the old secret from A still passes at B');
    assert.equal((await provision(a!.coapPort, late, fromB)).code, '2.01', 'a nonce of the old secret from B still passes at A');
    const events = (await a!.store.listEvents(0, 1000)).filter((e) => e.kind === 'admin.nonce-secret.rotate');
    assert.deepEqual(events.map((e) => [e.actor, e.detail]), [['admin:test', { previousUntil }]]);
  });

  it('gives the event feed one global order and wakes a long poll on another instance', async () => {
    const [a, b] = await cluster(2);
    const token = readFileSync(b!.adminTokenFile, 'utf8').trim();
    const head = (await b!.store.listEvents(0, 1000)).at(-1)?.seq ?? 0;
    const poll = fetch(`http://127.0.0.1:${b!.adminPort}/api/v1/events?after=${head}&wait=20`, { headers: { authorization: `Bearer ${token}` } });
    await new Promise((r) => setTimeout(r, 300)); // let the poll start waiting (the test does not depend on it)
    const t0 = Date.now();
    await a!.admin.reject('feed-1', 'test', { by: 'admin:test' });
    const res = (await (await poll).json()) as { events: { kind: string; seq: number }[] };
    const waited = Date.now() - t0;
    assert.ok(res.events.some((e) => e.kind === 'admin.reject'), `B's long poll returned A's event (${JSON.stringify(res)})`);
    assert.ok(waited < 15_000, `woken by the commit, not by the 20 s timeout (${waited} ms)`);
    // Writes from both instances, interleaved: both read the same sequence, in seq order.
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a! : b!).admin.reject(`feed-${i + 2}`, 'x', { by: 'admin:test' })));
    const fromA = await a!.store.listEvents(0, 1000);
    const fromB = await b!.store.listEvents(0, 1000);
    assert.deepEqual(fromA, fromB);
    for (let i = 1; i < fromA.length; i++) assert.ok(fromA[i]!.seq! > fromA[i - 1]!.seq!);
  });

  it("wakes a server-sent event stream and changes the ETags at another instance on one instance's commit", async () => {
    const [a, b] = await cluster(2);
    const token = readFileSync(b!.adminTokenFile, 'utf8').trim();
    const base = `http://127.0.0.1:${b!.adminPort}`;
    const get = (path: string, etag?: string) => fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}`, ...(etag ? { 'if-none-match': etag } : {}) } });
    // B's ETags before A's change, and a 304 for each while nothing changed.
    const tags = new Map<string, string>();
    for (const path of ['/api/v1/allowlist', '/api/v1/devices']) {
      const r = await get(path);
      assert.equal(r.status, 200);
      tags.set(path, r.headers.get('etag')!);
      assert.equal((await get(path, tags.get(path))).status, 304, `${path}: 304 while unchanged`);
    }
    const head = (await b!.store.listEvents(0, 1000)).at(-1)?.seq ?? 0;
    const t0 = Date.now();
    const sse = await readSse(`${base}/api/v1/events/stream?after=${head}`, token, (text) => /event: admin\.allowlist\.put\ndata: .*\n\n/.test(text), {}, async () => {
      await a!.admin.putAllow({ id: 'etag-x', pk: new Uint8Array(32).fill(3), type: 0, createdAt: a!.service.now() }, { by: 'admin:test' });
    });
    assert.equal(sse.status, 200);
    assert.match(sse.text, /event: admin\.allowlist\.put/, "B's stream delivered A's event");
    assert.ok(Date.now() - t0 < 15_000, 'woken by the commit');
    const changed = await get('/api/v1/allowlist', tags.get('/api/v1/allowlist'));
    assert.equal(changed.status, 200, "A's allowlist change is a new version at B");
    assert.notEqual(changed.headers.get('etag'), tags.get('/api/v1/allowlist'));
    assert.ok(((await changed.json()) as { items: { id: string }[] }).items.some((e) => e.id === 'etag-x'));
    assert.equal((await get('/api/v1/devices', tags.get('/api/v1/devices'))).status, 304, 'a collection A did not change keeps its ETag');
  });

  it('keeps per-device rate limits per instance: N instances give a device N times the burst', async () => {
    const dev = new TestDevice('budget-x');
    const frozen = Date.now(); // no refill during the test: the buckets hold exactly the burst
    const [a, b] = await cluster(2, `id,pk\n${dev.id},${dev.pk.toString('hex')}\n`, { rateLimitDevice: 1, rateBurstDevice: 3 }, () => frozen);
    for (const s of [a!, b!]) {
      for (let i = 0; i < 3; i++) assert.equal((await provision(s.coapPort, dev)).code, '2.01', `request ${i + 1} at ${s.coapPort}`);
      const over = await provision(s.coapPort, dev);
      assert.equal(over.code, '4.29', `the 4th request at ${s.coapPort} is over that instance's burst`);
      assert.ok(over.maxAge !== undefined && over.maxAge > 0, 'with Max-Age');
    }
  });

  it('answers 5.03 with Max-Age while PostgreSQL is down and carries on by itself once it is back, losing nothing', async () => {
    const devs = Array.from({ length: 60 }, (_, i) => new TestDevice(`fault-${i}`));
    const [a, b] = await cluster(2, `id,pk\n${devs.map((d) => `${d.id},${d.pk.toString('hex')}`).join('\n')}\n`);
    const codes = new Map<string, number>();
    const tokens: string[] = [];
    let unavailable: { code: string; maxAge?: number } | undefined;
    let next = 0;
    const worker = async (k: number): Promise<void> => {
      while (next < devs.length) {
        const dev = devs[next++]!;
        const s = k % 2 ? a! : b!;
        for (let attempt = 0; attempt < 50; attempt++) {
          const r = await provision(s.coapPort, dev);
          codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
          if (r.code === '2.01') {
            tokens.push(dev.id);
            break;
          }
          assert.equal(r.code, '5.03', `${dev.id}: only 5.03 while the database is away (${JSON.stringify(r.body)})`);
          unavailable = r;
          await new Promise((res) => setTimeout(res, 200)); // the device's own back-off, shortened
        }
      }
    };
    const load = Promise.all([0, 1, 2, 3].map(worker));
    while (tokens.length < 10) await new Promise((r) => setTimeout(r, 20));
    await pg.pause();
    // While it is down: a signed request gets 5.03 with Max-Age, promptly (no hang).
    const probe = devs.at(-1)!;
    const t0 = Date.now();
    const down = await provision(a!.coapPort, probe);
    assert.equal(down.code, '5.03');
    assert.equal(down.maxAge, 5);
    assert.ok(Date.now() - t0 < 10_000, 'answered within the connect timeout');
    await new Promise((r) => setTimeout(r, 500));
    await pg.resume();
    await load;
    assert.equal(tokens.length, devs.length, `every device got its token in the end (${JSON.stringify([...codes])})`);
    assert.ok(unavailable || codes.get('5.03'), 'some requests met the outage');
    const devices = await a!.store.counts();
    assert.equal(devices.devices, devs.length, 'a device record behind every token');
    for (const id of tokens) assert.ok((await b!.store.getAllow(id))?.consumedAt, `${id}: consumed`);
  });

  it('registers every instance with a heartbeat and trusts the live siblings, not the gone ones', async () => {
    const [a, b, c] = await cluster(3, undefined, { trustedServers: ['static-peer'] });
    const names = [a!, b!, c!].map((s) => s.config.instanceName);
    const trustsOthers = (s: RunningServer) => names.filter((x) => x !== s.config.instanceName).every((x) => s.membership!.trusted.includes(x));
    assert.ok(await eventually(async () => [a!, b!, c!].every(trustsOthers)), 'each trusts the two others after a heartbeat (5 s)');
    assert.ok(!a!.membership!.trusted.includes(a!.config.instanceName), 'not itself');
    assert.ok(a!.membership!.trusted.includes('static-peer'), 'trustedServers stay trusted');
    assert.deepEqual(a!.membership!.instances.map((i) => i.name).sort(), [...names].sort());
    const health = (await (await fetch(`http://127.0.0.1:${b!.adminPort}/api/v1/health`)).json()) as { instances?: number };
    assert.equal(health.instances, 3, 'health counts the live instances (no token, so no hosts)');
    const token = readFileSync(b!.adminTokenFile, 'utf8').trim();
    const listed = (await (await fetch(`http://127.0.0.1:${b!.adminPort}/api/v1/instances`, { headers: { authorization: `Bearer ${token}` } })).json()) as { shared: boolean; instances: { name: string; coapPort: number }[] };
    assert.equal(listed.shared, true);
    assert.deepEqual(listed.instances.map((i) => i.coapPort).sort(), [a!, b!, c!].map((s) => s.coapPort).sort(), 'the sidecar lists every instance with its ports');
    assert.equal((await fetch(`http://127.0.0.1:${b!.adminPort}/api/v1/instances`)).status, 401, 'the list needs a token');
    await c!.close();
    servers = servers.filter((s) => s !== c);
    assert.ok(await eventually(async () => !a!.membership!.trusted.includes(c!.config.instanceName)), 'a stopped instance is trusted no more');
  });

  it('lists the live instances in oob status, with a token; without one it gives their number', async () => {
    const [a, b] = await cluster(2);
    // A's view of the membership is as of its last heartbeat (B started after it): beat once now.
    await a!.membership!.beat();
    const { execFile } = await import('node:child_process');
    // Asynchronously: the servers run in this process and must answer meanwhile.
    const oob = (args: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, ['bin/oob.js', '--server', `http://127.0.0.1:${a!.adminPort}`, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, IDPROV_ADMIN_TOKEN: '' } }, (e, stdout, stderr) =>
          resolve({ status: e ? ((e as { code?: number }).code ?? null) : 0, stdout, stderr }),
        );
      });
    const token = readFileSync(a!.adminTokenFile, 'utf8').trim();
    const withToken = await oob(['--token', token, 'status']);
    assert.equal(withToken.status, 0, withToken.stderr);
    assert.match(withToken.stdout, /^instances: {4}2 instances live on the shared database:$/m);
    for (const s of [a!, b!]) assert.match(withToken.stdout, new RegExp(`^  \\S+  \\S+  coap ${s.coapPort}  coaps ${s.coapsPort}  admin ${s.adminPort}  v`, 'm'));
    const without = await oob(['--data', join(t.dir, 'no-such-data'), 'status']);
    assert.equal(without.status, 0, without.stderr);
    assert.match(without.stdout, /^instances: {4}2 instances live on the shared database \(with a token, `oob status` lists them\)$/m);
  });

  it('serializes event seqs in commit order across stores (a reader never skips a late commit)', async () => {
    const url = pg.createDatabase('order');
    const stores = await Promise.all([PostgresStore.open(url), PostgresStore.open(url), PostgresStore.open(url)]);
    try {
      const seen: number[] = [];
      let cursor = 0;
      let writing = true;
      const reader = (async () => {
        while (writing) {
          for (const e of await stores[0]!.listEvents(cursor, 1000)) {
            seen.push(e.seq!);
            cursor = e.seq!;
          }
        }
      })();
      await Promise.all(
        stores.flatMap((s, k) => Array.from({ length: 100 }, (_, i) => s.apply([{ kind: 'event', event: { at: 1, kind: `w${k}`, actor: 'system', detail: { i } } }]))),
      );
      writing = false;
      await reader;
      for (const e of await stores[0]!.listEvents(cursor, 1000)) seen.push(e.seq!);
      assert.equal(seen.length, 300, 'the tailing reader saw every event exactly once');
      assert.equal(new Set(seen).size, 300);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });
});
