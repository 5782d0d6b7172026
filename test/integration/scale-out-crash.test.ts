/**
 * kill -9 of one of three instances on a shared PostgreSQL during a provisioning burst (issue 16):
 * the instances are real server processes (test/support/server-child.ts); devices that lose theirs
 * go to another one. Nothing a device was told is lost: every token received has its device record
 * and its allowlist consumption in the database, and every device ends up provisioned.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseResponse, type ResponseBody } from '../../src/protocol/messages.ts';
import { PostgresStore } from '../../src/store/postgres/store.ts';
import { tempDir } from '../support/temp-dir.ts';
import { coapRequest } from '../support/coap-client.ts';
import { TestDevice } from '../support/device.ts';
import { TestPostgres } from '../support/postgres.ts';

interface Instance {
  proc: ChildProcessWithoutNullStreams;
  port: number;
  dead: boolean;
}

async function startInstance(flags: Record<string, unknown>): Promise<Instance> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'test/support/server-child.ts', JSON.stringify(flags)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout }).once('line', resolve);
    proc.once('exit', (code) => reject(new Error(`instance exited ${code}: ${stderr}`)));
  });
  return { proc, port: (JSON.parse(line) as { port: number }).port, dead: false };
}

async function post(port: number, payload: Buffer): Promise<{ code: string; body: ResponseBody } | undefined> {
  try {
    const r = await coapRequest({ port, method: 'POST', path: '/idprov/request', payload, contentFormat: 18, timeoutMs: 1500 });
    return { code: r.code, body: parseResponse(r.payload) };
  } catch {
    return undefined; // no answer: the instance is gone
  }
}

describe('kill -9 of one of three instances on one PostgreSQL during a provisioning burst', function () {
  this.timeout(180_000);
  let pg: TestPostgres;
  const t = tempDir('idprov-scale-crash-');
  const instances: Instance[] = [];
  before(async () => {
    pg = await TestPostgres.start();
  });
  after(async () => {
    for (const i of instances) if (!i.dead) i.proc.kill('SIGKILL');
    await pg?.stop();
    t.cleanup();
  });

  it('loses no token\'s record, and the devices of the killed instance carry on at the others', async () => {
    const devs = Array.from({ length: 90 }, (_, i) => new TestDevice(`burst-${i}`));
    const allowlist = join(t.dir, 'allow.csv');
    writeFileSync(allowlist, `id,pk\n${devs.map((d) => `${d.id},${d.pk.toString('hex')}`).join('\n')}\n`);
    const url = pg.createDatabase('crash');
    const flags = (k: number) => ({ dataDir: join(t.dir, `i${k}`), store: 'postgres', databaseUrl: url, coapPort: 0, coapsPort: 0, adminPort: 0, bind: '127.0.0.1', mdns: false });
    instances.push(await startInstance({ ...flags(0), allowlist }));
    instances.push(...(await Promise.all([startInstance(flags(1)), startInstance(flags(2))])));

    const tokens = new Map<string, number>(); // device id -> instance index that answered 2.01
    let killedAt = 0;
    const failover: number[] = [];
    const seen: string[] = [];
    const device = async (i: number): Promise<void> => {
      const dev = devs[i]!;
      await new Promise((r) => setTimeout(r, i * 25)); // devices arrive over ~2 s: the kill lands mid-burst
      let k = i % 3;
      const lostAt: number[] = [];
      for (let attempt = 0; attempt < 20 && !tokens.has(dev.id); attempt++) {
        const inst = instances[k]!;
        const ch = await post(inst.port, dev.request());
        const r = ch?.code === '4.01' ? await post(inst.port, dev.request({ nonce: ch.body.nonce! })) : ch;
        if (r?.code === '2.01') {
          tokens.set(dev.id, k);
          if (lostAt.length > 0 && killedAt > 0) failover.push(Date.now() - killedAt);
          return;
        }
        seen.push(`${k}:${r?.code ?? 'none'}:${r?.body.diag ?? ''}`);
        if (r === undefined) {
          lostAt.push(Date.now());
          k = (k + 1) % 3; // its server is gone: the device finds another (docs/discovery.md)
        }
      }
    };
    const burst = Promise.all(devs.map((_, i) => device(i)));
    while (tokens.size < 20) await new Promise((r) => setTimeout(r, 10));
    const victim = instances[0]!;
    await new Promise<void>((res) => {
      victim.proc.once('exit', () => res());
      victim.proc.kill('SIGKILL');
      killedAt = Date.now();
    });
    victim.dead = true;
    await burst;

    const store = await PostgresStore.open(url);
    try {
      assert.equal(tokens.size, devs.length, 'every device got a token in the end');
      for (const dev of devs) {
        const rec = await store.loadSubject(dev.id);
        assert.ok(rec.device, `${dev.id}: its device record exists`);
        assert.ok(rec.allow?.consumedAt, `${dev.id}: its allowlist entry is consumed`);
      }
      const byKilled = [...tokens.values()].filter((k) => k === 0).length;
      assert.ok(byKilled > 0, `the killed instance had issued tokens before it died (${JSON.stringify(seen.slice(0, 30))})`);
      console.log(`      (tokens: ${[0, 1, 2].map((k) => [...tokens.values()].filter((x) => x === k).length).join('/')} by instance; failovers: ${failover.length}, median ${failover.sort((a, b) => a - b)[failover.length >> 1] ?? '-'} ms after the kill)`);
    } finally {
      await store.close();
      for (const i of instances) if (!i.dead) i.proc.kill('SIGKILL');
    }
  });
});
