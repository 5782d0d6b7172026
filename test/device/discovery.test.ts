/**
 * `idprov-device discover` (the C library's minimal mDNS browser, device/ports/mdns.c) finds the real
 * server in a network namespace lab (test/support/netns-lab.ts: two namespaces joined by a veth pair),
 * remembers its kid/fp next to the key file, reports a change, and provisions at the discovered URI.
 * Needs root; outside CI the suite is skipped with the reason, with CI=true it fails instead.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, netnsUnavailable, type Proc } from '../support/netns-lab.ts';
import { ROOT, hostBuild } from '../support/c-library.ts';

const NODE = process.execPath;
const SERVER_CHILD = join(ROOT, 'test/support/discovery-server-child.ts');
const host = hostBuild();
const CLI = join(host.dir, 'idprov-device');

describe('idprov-device discover (C, mDNS) in network namespaces', function () {
  this.timeout(60_000);
  let lab: Lab;
  let server: Proc;
  let kid = '';
  let key = '';

  before(async function () {
    const why = netnsUnavailable();
    if (why) {
      if (process.env['CI'] === 'true') throw new Error(why);
      this.skip();
    }
    assert.equal(host.error, undefined, host.error);
    lab = Lab.create();
    key = join(lab.dir, 'c-lab.key');
    const g = await lab.run(lab.clientNs, [CLI, 'keygen', '--key', key, '--json']);
    assert.equal(g.code, 0, g.stderr.join('\n'));
    const pk = (JSON.parse(g.stdout[0]!) as { pk: string }).pk;
    const allowlist = join(lab.dir, 'allow.csv');
    writeFileSync(allowlist, `id,pk,mac,secret,type,expires\nc-lab,${pk},,,device,\n`);
    const flags = { dataDir: join(lab.dir, 'data'), allowlist, adminPort: 0, coapsPort: 0, instanceName: 'idprov-clab', discoveryInterfaces: [lab.serverIf] };
    server = lab.spawn(lab.serverNs, [NODE, '--import', 'tsx', SERVER_CHILD, JSON.stringify(flags)], { name: 'server', env: { CHILD_LOG: 'info' } });
    kid = String((await server.waitForJson('stdout', (j) => j['ready'] === true))['kid']);
    await server.waitForJson('stderr', (j) => j['msg'] === 'mdns: announced');
  });
  after(async () => {
    await lab?.cleanup();
  });

  it('finds the server with its port, coaps port, kid and fp, and provisions at the URI it found', async () => {
    const r = await lab.run(lab.clientNs, [CLI, 'discover', '--interface', lab.clientIp, '--key', key, '--timeout', '3000', '--json']);
    assert.equal(r.code, 0, [...r.stdout, ...r.stderr].join('\n'));
    const found = r.stdout.map((l) => JSON.parse(l) as Record<string, unknown>).find((j) => j['instance'] === 'idprov-clab');
    assert.ok(found, r.stdout.join('\n'));
    assert.equal(found['host'], lab.serverIp);
    assert.equal(found['port'], 5683);
    assert.equal(found['kid'], kid);
    assert.equal(String(found['fp']).length, 43);
    assert.equal(found['kidChanged'], false);
    const p = await lab.run(lab.clientNs, [CLI, 'provision', '--server', String(found['uri']), '--id', 'c-lab', '--key', key, '--json']);
    assert.equal(p.code, 0, [...p.stdout, ...p.stderr].join('\n'));
    assert.equal((JSON.parse(p.stdout.pop()!) as Record<string, unknown>)['kid'], kid);
  });

  it('reports a kid that differs from the one it remembered', async () => {
    // what the device remembered is overwritten with another kid, as if the server had rotated keys
    const srv = join(`${key}.server`);
    const b = Buffer.alloc(40, 0x11);
    writeFileSync(srv, b);
    const r = await lab.run(lab.clientNs, [CLI, 'discover', '--interface', lab.clientIp, '--key', key, '--timeout', '3000', '--json']);
    const found = r.stdout.map((l) => JSON.parse(l) as Record<string, unknown>).find((j) => j['instance'] === 'idprov-clab');
    assert.ok(found, r.stdout.join('\n'));
    assert.equal(found['kidChanged'], true);
    assert.equal(found['fpChanged'], true);
  });
});
