/**
 * Instances on one PostgreSQL, each in a network namespace of its own (issue 16): two real server
 * processes (test/support/discovery-server-child.ts) with their own addresses, each with a link to the
 * database network and one to the device network; PostgreSQL (test/support/postgres.ts) in a hub
 * namespace on 10.213.8.1; the devices (test/support/netns-device.ts) in a namespace of their own
 * (the lab: test/support/netns-cluster.ts).
 *
 * (a) An instance whose database link is taken down answers 5.03 with Max-Age (it neither crashes nor
 *     hangs) while the other instance provisions the devices, and it carries on by itself once the
 *     link is back: the device that met the 5.03 retries after Max-Age until it gets its token there.
 * (b) A device whose instance is killed (kill -9) finds the other by discovery (mDNS/DNS-SD, CoAP
 *     multicast when mDNS finds nothing) in the namespaces and gets its token there.
 * (c) The same over coaps: its DTLS session with the killed instance goes silent; it discovers the
 *     other (CoAPS port and certificate fingerprint from the TXT record), shakes hands anew pinning
 *     that instance's own fingerprint, and refreshes over the new session.
 * Every token has its device record in the database.
 *
 * Needs root and iproute2. Outside CI the suite is skipped with the reason when namespaces cannot be
 * made; with CI=true it fails instead.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../support/temp-dir.ts';
import { TestDevice } from '../support/device.ts';
import { ClusterLab, clusterLabUnavailable, type Proc } from '../support/netns-cluster.ts';
import { TestPostgres } from '../support/postgres.ts';

const NODE = process.execPath;
const ROOT = new URL('../..', import.meta.url).pathname;
const SERVER_CHILD = join(ROOT, 'test/support/discovery-server-child.ts');
const DEVICES = join(ROOT, 'test/support/netns-device.ts');

type Answer = { n: number; session?: string; code?: string; maxAge?: number; err?: number; diag?: string; token?: string; ms?: number; error?: string; servers?: { uri: string; via: string; address: string; port: number; instance?: string; coaps?: number; fp?: string }[] };

describe('instances on one PostgreSQL in network namespaces of their own (issue 16)', function () {
  this.timeout(300_000);
  let lab: ClusterLab;
  let pg: TestPostgres | undefined;
  const t = tempDir('idprov-netns-scale-');
  const instances: Proc[] = [];
  let devices: Proc;
  let cmd = 0;
  const devs = Array.from({ length: 40 }, (_, i) => new TestDevice(`ns-dev-${i}`));
  const key = (d: TestDevice) => d.key.export({ type: 'pkcs8', format: 'der' }).toString('base64');
  const adminOps = new Map<Proc, number>();

  /** One command to the devices' process; its answer. */
  async function device(c: Record<string, unknown>): Promise<Answer> {
    const n = ++cmd;
    devices.write(JSON.stringify(c));
    return (await devices.waitForJson('stdout', (j) => j['n'] === n)) as Answer;
  }
  const provision = (d: TestDevice, k: number, timeoutMs?: number) => device({ op: 'provision', host: lab.instanceIp(k), port: 5683, id: d.id, key: key(d), ...(timeoutMs ? { timeoutMs } : {}) });
  const refreshAt = (d: TestDevice, host: string, port: number, token: string, timeoutMs?: number) => device({ op: 'refresh', host, port, id: d.id, key: key(d), token, ...(timeoutMs ? { timeoutMs } : {}) });

  /** A Store method run in instance `k`'s process. */
  async function storeOp(k: number, name: string, ...args: unknown[]): Promise<unknown> {
    const p = instances[k]!;
    const n = (adminOps.get(p) ?? 0) + 1;
    adminOps.set(p, n);
    p.write(JSON.stringify({ op: `store.${name}`, args }));
    const r = await p.waitForJson('stdout', (j) => j['done'] === n);
    if (r['error']) throw new Error(`${name}: ${String(r['error'])}`);
    return r['result'];
  }

  before(async function () {
    const why = clusterLabUnavailable();
    if (why) {
      if (process.env['CI']) throw new Error(`the namespace tests need network namespaces: ${why}`);
      console.warn(`    skipped: ${why}`);
      this.skip();
    }
    lab = ClusterLab.create(2);
    pg = await TestPostgres.start({ netns: lab.hubNs, host: lab.dbIp, allowFrom: ['10.213.8.0/24'] });
    url = pg.createDatabase('netns');
    allowlist = join(t.dir, 'allow.csv');
    writeFileSync(allowlist, `id,pk\n${devs.map((d) => `${d.id},${d.pk.toString('hex')}`).join('\n')}\n`);
    for (let k = 0; k < 2; k++) instances.push(await startInstance(k));
    devices = lab.spawn(lab.deviceNs, [NODE, '--import', 'tsx', DEVICES], { name: 'devices' });
  });

  let url = '';
  let allowlist = '';
  /** Instance `k` in its namespace, on its data directory (the same one again after a restart). */
  async function startInstance(k: number): Promise<Proc> {
    const flags = {
      dataDir: join(t.dir, `i${k}`),
      store: 'postgres',
      databaseUrl: url,
      coapPort: 5683,
      coapsPort: 0,
      adminPort: 0,
      mdns: true,
      instanceName: `netns-i${k}`,
      discoveryInterfaces: [lab.devIf],
      ...(k === 0 ? { allowlist } : {}),
    };
    // A UTS namespace of its own too: a host name of its own, as on a machine of its own (the mDNS
    // SRV target; two instances sharing one host name would share one A record).
    const argv = ['unshare', '--uts', '--', 'sh', '-c', `echo netns-host-${k} > /proc/sys/kernel/hostname && exec "$@"`, 'sh', NODE, '--import', 'tsx', SERVER_CHILD, JSON.stringify(flags)];
    const p = lab.spawn(lab.instanceNs[k]!, argv, { name: `instance ${k}`, env: { CHILD_LOG: process.env['NETNS_CHILD_LOG'] ?? 'warn' } });
    await p.waitForJson('stdout', (j) => j['ready'] === true);
    return p;
  }

  let failed = false;
  afterEach(function () {
    if (this.currentTest?.state === 'failed') failed = true;
  });
  after(async () => {
    // What the instances logged (warnings and up), when something failed: the reason is usually there.
    if (failed) for (const p of instances) console.log(`--- ${p.name} stderr\n${p.stderr.slice(-40).join('\n')}`);
    await lab?.cleanup();
    await pg?.stop();
    t.cleanup();
  });

  const tokens = new Map<string, number>(); // device id -> instance that issued its token

  it('(a) an instance cut off from the database answers 5.03 with Max-Age, the other carries the load, and it recovers by itself', async () => {
    for (const k of [0, 1]) {
      const r = await provision(devs[k]!, k);
      assert.equal(r.code, '2.01', `instance ${k} provisions before the cut (${JSON.stringify(r)})`);
      tokens.set(devs[k]!.id, k);
    }

    lab.setDbLink(0, false);
    const probeDev = devs[2]!;
    const load = devs.slice(3, 23);
    let next = 0;
    const worker = async () => {
      const got: Answer[] = [];
      while (next < load.length) {
        const d = load[next++]!;
        const r = await provision(d, 1);
        got.push(r);
        if (r.code === '2.01') tokens.set(d.id, 1);
      }
      return got;
    };
    const [probe, ...loaded] = await Promise.all([provision(probeDev, 0), worker(), worker(), worker()]);
    const probeAgain = await provision(probeDev, 0);
    const alive = instances[0]!.child.exitCode === null;
    lab.setDbLink(0, true);

    assert.equal(probe.code, '5.03', `the cut-off instance answers 5.03 (${JSON.stringify(probe)})`);
    assert.ok(probe.maxAge !== undefined && probe.maxAge > 0, `with Max-Age (${JSON.stringify(probe)})`);
    assert.equal(probeAgain.code, '5.03', `and again while still cut off (${JSON.stringify(probeAgain)})`);
    assert.ok(alive, 'the cut-off instance is still running');
    const all = loaded.flat();
    assert.equal(all.length, load.length);
    assert.deepEqual(all.filter((r) => r.code !== '2.01'), [], 'the other instance provisioned every device meanwhile');

    // Link back: the device that met the 5.03 retries after Max-Age, at the same instance (bounded).
    let r: Answer = probeAgain;
    let attempts = 0;
    const t0 = Date.now();
    while (r.code !== '2.01' && attempts < 30) {
      assert.equal(r.code, '5.03', `only 5.03 until it recovers (${JSON.stringify(r)})`);
      await new Promise((res) => setTimeout(res, (r.maxAge ?? 5) * 1000));
      r = await provision(probeDev, 0);
      attempts++;
    }
    assert.equal(r.code, '2.01', `the instance recovered by itself (${attempts} retries, ${JSON.stringify(r)})`);
    tokens.set(probeDev.id, 0);
    assert.ok(instances[0]!.child.exitCode === null, 'no restart was needed');
    console.log(`      (5.03 after ${probe.ms} ms and ${probeAgain.ms} ms while cut off; load through the other instance: ${all.length} tokens; recovered ${Date.now() - t0} ms after the link came back, ${attempts} retries after Max-Age)`);
  });

  it('(b) a device that loses its instance (kill -9) finds the other by discovery and gets its token there', async () => {
    const d = devs[30]!;
    const first = await provision(d, 0);
    assert.equal(first.code, '2.01', JSON.stringify(first));
    tokens.set(d.id, 0);
    // mDNS is datagrams: a discovery may miss an answer, so a device asks again (at most 3 times).
    const discover = async (ok: (a: Answer) => boolean): Promise<Answer> => {
      let a = await device({ op: 'discover', iface: lab.deviceIp, timeoutMs: 3000 });
      for (let i = 1; i < 3 && !ok(a); i++) a = await device({ op: 'discover', iface: lab.deviceIp, timeoutMs: 3000 });
      return a;
    };
    const has = (a: Answer, k: number) => (a.servers ?? []).some((s) => s.address === lab.instanceIp(k));
    const before = await discover((a) => has(a, 0) && has(a, 1));
    const seen = new Set(before.servers?.map((s) => s.address));
    assert.ok(seen.has(lab.instanceIp(0)) && seen.has(lab.instanceIp(1)), `discovery in the device namespace finds both instances (${JSON.stringify(before)})`);

    const victim = instances[0]!;
    const killedAt = Date.now();
    await victim.stop('SIGKILL');

    const lost = await refreshAt(d, lab.instanceIp(0), 5683, first.token!, 3000);
    assert.equal(lost.code, 'none', `the killed instance does not answer (${JSON.stringify(lost)})`);
    const found = await discover((a) => has(a, 1));
    const others = (found.servers ?? []).filter((s) => s.address !== lab.instanceIp(0));
    assert.ok(others.some((s) => s.address === lab.instanceIp(1)), `discovery finds the live instance (${JSON.stringify(found)})`);
    assert.ok(!(found.servers ?? []).some((s) => s.address === lab.instanceIp(0)), 'and not the killed one');
    const s = others[0]!;
    const r = await refreshAt(d, s.address, s.port, first.token!);
    const failoverMs = Date.now() - killedAt;
    assert.equal(r.code, '2.01', `the device gets its token from the other instance (${JSON.stringify(r)})`);
    tokens.set(d.id, 1);
    console.log(`      (failover: ${failoverMs} ms from kill -9 to the next token, via ${s.via}; 3 s of it the device's own wait for the lost server, 3 s its discovery)`);
  });

  it('has a device record behind every token, whichever instance issued it', async function () {
    if (instances[1]?.child.exitCode !== null) this.skip();
    assert.ok(tokens.size > 20, `${tokens.size} tokens`);
    for (const id of tokens.keys()) {
      const rec = (await storeOp(1, 'loadSubject', id)) as { device?: { id: string } };
      assert.ok(rec.device, `${id}: its device record exists`);
    }
  });

  it('(c) over coaps: a device whose instance dies shakes hands anew with the other, pinning that one\'s fp from discovery, and refreshes there', async () => {
    // Instance 0 died in (b): bring it back on its data directory (same certificate, new CoAPS port).
    if (instances[0]!.child.exitCode === null && instances[0]!.child.signalCode === null) throw new Error('instance 0 should be down after (b)');
    instances[0] = await startInstance(0);
    type Server = NonNullable<Answer['servers']>[number];
    const find = async (k: number): Promise<Server | undefined> => {
      for (let i = 0; i < 3; i++) {
        const a = await device({ op: 'discover', iface: lab.deviceIp, timeoutMs: 3000 });
        const s = a.servers?.find((x) => x.address === lab.instanceIp(k) && x.coaps !== undefined && x.fp !== undefined);
        if (s) return s;
      }
      return undefined;
    };
    const [s0, s1] = [await find(0), await find(1)];
    assert.ok(s0 && s1, 'discovery gives both instances with their CoAPS port and certificate fingerprint (TXT)');
    assert.notEqual(s0.fp, s1.fp, 'each instance has a certificate of its own');
    const d = devs[32]!;
    const first = await provision(d, 1);
    assert.equal(first.code, '2.01', JSON.stringify(first));
    const open = async (s: Server, fp = s.fp) => device({ op: 'coaps-connect', host: s.address, coaps: s.coaps, fp, timeoutMs: 10_000 });
    const refreshOver = (session: string | undefined, token: string, timeoutMs?: number) => device({ op: 'coaps-refresh', session, id: d.id, key: key(d), token, ...(timeoutMs ? { timeoutMs } : {}) });
    const before = await open(s1);
    assert.ok(before.session, JSON.stringify(before));
    const viaOne = await refreshOver(before.session, first.token!);
    assert.equal(viaOne.code, '2.01', `a refresh over the DTLS session with instance 1 (${JSON.stringify(viaOne)})`);

    await instances[1]!.stop('SIGKILL');
    const killedAt = Date.now();
    const lost = await refreshOver(before.session, viaOne.token!, 3000);
    assert.equal(lost.code, 'none', `the session with the killed instance gets no answer (${JSON.stringify(lost)})`);
    const again = await find(0);
    assert.ok(again, 'discovery finds the live instance');
    const wrongPin = await open(again, s1.fp);
    assert.equal(wrongPin.code, 'none', 'the other instance\'s fingerprint does not fit it: pin each instance\'s own');
    const after = await open(again);
    assert.ok(after.session, `a new handshake with instance 0 (${JSON.stringify(after)})`);
    const r = await refreshOver(after.session, viaOne.token!);
    assert.equal(r.code, '2.01', `the refresh succeeds over the new session (${JSON.stringify(r)})`);
    const rec = (await storeOp(0, 'loadSubject', d.id)) as { device?: { lastCti?: string } };
    assert.ok(rec.device, 'the device record is there');
    console.log(`      (coaps failover: ${Date.now() - killedAt} ms from kill -9 to the refreshed token over a new DTLS session with the other instance)`);
  });
});
