/**
 * Discovery end to end, in two network namespaces the test creates (netns.ts): the real server
 * (server-child.ts) in one, avahi (private D-Bus), the device simulator and a CoAP multicast client
 * in the other. Interop with avahi-browse / avahi-publish, CoAP multicast discovery, the rogue alert
 * and the provisioning switch, `device-sim discover`. Nothing waits for a fixed time: every step waits
 * for an event (a log line, an output line, a process exit); mocha's timeout bounds each.
 *
 * Needs root. Outside CI the suite is skipped with the reason when namespaces cannot be made; with
 * CI=true it fails instead.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, netnsUnavailable, type Proc } from '../support/netns-lab.ts';

const NODE = process.execPath;
const ROOT = new URL('../..', import.meta.url).pathname;
const DEVICE_SIM = join(ROOT, 'bin/device-sim.js');
const SERVER_CHILD = join(ROOT, 'test/support/discovery-server-child.ts');
const COAP_PROBE = join(ROOT, 'test/support/coap-probe-child.ts');

describe('discovery in network namespaces (docs/spec/idprov-coap-v1.md §7)', function () {
  this.timeout(60_000);
  let lab: Lab;
  let server: Proc;
  let kid = '';
  let op = 0;
  const keys: Record<string, string> = {};

  /** Run an AdminService method (or `store.<method>`) in the server process. */
  async function adminOp(name: string, ...args: unknown[]): Promise<Record<string, unknown>> {
    const n = ++op;
    server.write(JSON.stringify({ op: name, args }));
    const r = await server.waitForJson('stdout', (j) => j['done'] === n);
    if (r['error']) throw new Error(`${name}: ${String(r['error'])}`);
    return r;
  }

  async function deviceSim(...args: string[]): Promise<{ code: number | null; json: Record<string, unknown>; stderr: string[] }> {
    const r = await lab.run(lab.clientNs, [NODE, DEVICE_SIM, ...args, '--json']);
    const last = r.stdout.filter((l) => l.startsWith('{')).at(-1);
    assert.ok(last, `device-sim ${args[0]} printed no JSON (exit ${r.code}):\n${r.stdout.join('\n')}\n${r.stderr.join('\n')}`);
    return { code: r.code, json: JSON.parse(last) as Record<string, unknown>, stderr: r.stderr };
  }
  const provision = (id: string) => deviceSim('provision', '--server', `coap://${lab.serverIp}:5683`, '--id', id, '--key', keys[id]!, '--timeout', '20000');
  const refresh = (id: string) => deviceSim('refresh', '--server', `coap://${lab.serverIp}:5683`, '--id', id, '--key', keys[id]!, '--timeout', '20000');
  const discover = (...extra: string[]) => deviceSim('discover', '--interface', lab.clientIp, '--state', join(lab.dir, 'discovery.json'), '--timeout', '20000', ...extra);

  before(async function () {
    const why = netnsUnavailable();
    if (why) {
      if (process.env['CI']) throw new Error(`discovery tests need network namespaces: ${why}`);
      console.warn(`    skipped: ${why}`);
      this.skip();
    }
    lab = Lab.create();
    await lab.startAvahi();
    // Three allowlisted devices (keys made offline).
    const rows = ['id,pk,mac,secret,type,expires'];
    for (const id of ['dev-a', 'dev-b', 'dev-c']) {
      keys[id] = join(lab.dir, `${id}.key`);
      const r = await lab.run(lab.clientNs, [NODE, DEVICE_SIM, 'keygen', '--key', keys[id]!, '--json']);
      rows.push(`${id},${(JSON.parse(r.stdout[0]!) as { pk: string }).pk},,,device,`);
    }
    const allowlist = join(lab.dir, 'allow.csv');
    writeFileSync(allowlist, `${rows.join('\n')}\n`);
    const flags = { dataDir: join(lab.dir, 'data'), allowlist, adminPort: 0, coapsPort: 0, instanceName: 'idprov-lab', discoveryInterfaces: [lab.serverIf] };
    server = lab.spawn(lab.serverNs, [NODE, '--import', 'tsx', SERVER_CHILD, JSON.stringify(flags)], { name: 'server', env: { CHILD_LOG: 'info' } });
    kid = String((await server.waitForJson('stdout', (j) => j['ready'] === true))['kid']);
    await server.waitForJson('stderr', (j) => j['msg'] === 'mdns: announced');
  });

  after(async () => {
    await lab?.cleanup();
  });

  // Mocha runs a suite's own tests before its child suites: every test sits in a child suite so
  // that they run in the order written.
  describe('advertising', () => {
    it('is seen by avahi-browse with its SRV (host, CoAP port) and TXT (v, path, coaps, kid, fp)', async () => {
      const browse = lab.spawn(lab.clientNs, ['avahi-browse', '-rp', '_idprov._udp'], { env: lab.avahiEnv, name: 'avahi-browse' });
      const line = await browse.waitFor('stdout', (l) => l.startsWith('=') && l.includes(';IPv4;idprov-lab;'));
      await browse.stop();
      // =;iface;IPv4;name;type;domain;host;address;port;"txt" "txt" …
      const f = line.split(';');
      assert.equal(f[4], '_idprov._udp');
      assert.equal(f[7], lab.serverIp);
      assert.equal(f[8], '5683');
      const txt = Object.fromEntries([...f.slice(9).join(';').matchAll(/"([^"=]+)=([^"]*)"/g)].map((m) => [m[1], m[2]]));
      assert.equal(txt['v'], '1');
      assert.equal(txt['path'], '/idprov/request');
      assert.equal(txt['kid'], kid);
      assert.match(txt['coaps'] ?? '', /^\d+$/);
      assert.match(txt['fp'] ?? '', /^[A-Za-z0-9_-]{43}$/);
    });

    for (const v of ['IPv4', 'IPv6'] as const) {
      it(`answers GET /.well-known/core?rt=idprov* on the ${v} CoAP group, and nothing for a filter that matches nothing`, async () => {
        const args = v === 'IPv4' ? ['224.0.0.187', lab.serverIp, lab.clientIp] : [`ff02::fd%${lab.clientIf}`, lab.serverIp6, lab.clientIf];
        const r = await lab.run(lab.clientNs, [NODE, '--import', 'tsx', COAP_PROBE, ...args]);
        assert.equal(r.code, 0, r.stderr.join('\n'));
        const { inbox } = JSON.parse(r.stdout.at(-1)!) as { inbox: { token: string; code: string; type: string; from: string; payload: string }[] };
        const answers = inbox.filter((m) => m.token === 'b2');
        assert.equal(answers.length, 1, JSON.stringify(inbox));
        assert.equal(answers[0]!.code, '2.05');
        assert.equal(answers[0]!.type, 'NON');
        assert.ok(answers[0]!.from.endsWith(':5683'));
        assert.ok(answers[0]!.payload.includes('</idprov/request>;rt="idprov.request"'));
        assert.deepEqual(inbox.filter((m) => m.token === 'a1'), [], 'no answer to the filter that matches nothing');
      });
    }

    it('is found by device-sim discover over mDNS, which remembers its kid and fp', async () => {
      const r = await discover();
      assert.equal(r.code, 0, r.stderr.join('\n'));
      assert.equal(r.json['via'], 'mdns');
      assert.equal(r.json['instance'], 'idprov-lab');
      assert.equal(r.json['uri'], `coap://${lab.serverIp}:5683`);
      assert.equal(r.json['kid'], kid);
      assert.deepEqual(r.json['warnings'], []);
    });

    it('is found by device-sim discover over CoAP multicast when mDNS is not used', async () => {
      const r = await discover('--no-mdns');
      assert.equal(r.code, 0, r.stderr.join('\n'));
      assert.equal(r.json['via'], 'coap');
      assert.equal(r.json['uri'], `coap://${lab.serverIp}:5683`);
    });

    it('announces the new kid after a key rotation, and device-sim discover warns that it changed', async () => {
      const mark = server.stderr.length;
      const rotated = await adminOp('rotateKey', { by: 'admin:test' });
      const fresh = String(rotated['result']);
      await server.waitForJson('stderr', (j) => j['msg'] === 'mdns: TXT updated' && (j['txt'] as Record<string, string>)['kid'] === fresh, mark);
      const r = await discover();
      assert.equal(r.json['kid'], fresh);
      assert.ok(r.stderr.some((l) => l.startsWith(`warning: kid changed for "idprov-lab": was ${kid}, now ${fresh}`)), r.stderr.join('\n'));
      kid = fresh;
    });

    it('provisions a device while no rogue is around', async () => {
      const r = await provision('dev-a');
      assert.equal(r.json['status'], 'approved', JSON.stringify(r.json));
    });

  });

  describe('a rogue server published with avahi-publish', () => {
    let rogue: Proc;

    it('raises the alert naming the rogue\'s host, port and TXT, and records it in the event log', async () => {
      const mark = server.stderr.length;
      rogue = lab.spawn(lab.clientNs, ['avahi-publish', '-s', 'rogue-lab', '_idprov._udp', '5699', 'v=1', 'path=/idprov/request', 'kid=0badc0de0badc0de'], { env: lab.avahiEnv, name: 'avahi-publish' });
      const alert = await server.waitForJson('stderr', (j) => j['evt'] === 'alert' && j['kind'] === 'alert.rogue-server', mark);
      assert.equal(alert['level'], 50);
      const r = alert['rogue'] as Record<string, unknown>;
      assert.equal(r['instance'], 'rogue-lab');
      assert.equal(r['host'], 'idpv-peer.local');
      assert.equal(r['port'], 5699);
      assert.deepEqual(r['txt'], { v: '1', path: '/idprov/request', kid: '0badc0de0badc0de' });
      assert.match(String(alert['msg']), /^rogue provisioning server seen: "rogue-lab" at idpv-peer\.local:5699/);
      const events = (await adminOp('store.listEvents', 0, 1000))['result'] as { kind: string; actor: string; detail?: Record<string, unknown> }[];
      const ev = events.find((e) => e.kind === 'alert.rogue-server');
      assert.ok(ev, JSON.stringify(events.map((e) => e.kind)));
      assert.equal(ev.actor, 'system');
      assert.equal(ev.detail?.['port'], 5699);
      const disable = events.find((e) => e.kind === 'admin.disable');
      assert.match(String(disable?.detail?.['reason']), /rogue-lab/);
    });

    it('answers a new device 5.03 with err 10 (disabled)', async () => {
      const r = await provision('dev-b');
      assert.equal(r.json['status'], 'refused');
      assert.equal(r.json['code'], '5.03');
      assert.equal(r.json['err'], 10);
      assert.doesNotMatch(String(r.json['diag']), /rogue-lab/, 'the rogue\'s address stays on the admin side');
    });

    it('still refreshes the token of a provisioned device', async () => {
      const r = await refresh('dev-a');
      assert.equal(r.json['status'], 'approved', JSON.stringify(r.json));
    });

    it('keeps provisioning disabled after the rogue leaves, until an admin enables it again', async () => {
      const mark = server.stderr.length;
      await rogue.stop();
      await server.waitForJson('stderr', (j) => j['kind'] === 'rogue-gone' && j['instance'] === 'rogue-lab', mark);
      assert.equal((await provision('dev-b')).json['code'], '5.03');
      await adminOp('setProvisioning', true, undefined, { by: 'admin:test' });
      const r = await provision('dev-b');
      assert.equal(r.json['status'], 'approved', JSON.stringify(r.json));
    });
  });

  describe('shutdown', () => {
    it('says goodbye on shutdown, so that avahi drops it at once', async () => {
      const browse = lab.spawn(lab.clientNs, ['avahi-browse', '-p', '_idprov._udp'], { env: lab.avahiEnv, name: 'avahi-browse' });
      await browse.waitFor('stdout', (l) => l.startsWith('+') && l.includes(';idprov-lab;'));
      server.write(JSON.stringify({ op: 'close' }));
      await browse.waitFor('stdout', (l) => l.startsWith('-') && l.includes(';idprov-lab;'));
      await browse.stop();
      await server.exited;
    });
  });
});
