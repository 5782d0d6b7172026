/**
 * Where scenario 2's allocations come from: one round of provisioning at N=16 with V8's sampling heap
 * profiler attached to the server over the inspector, counting objects that died young too
 * (`includeObjectsCollectedByMinorGC`), so transient garbage per request shows. Writes a
 * .heapprofile (Chrome DevTools, Memory tab) and prints the top allocation sites by bytes.
 * Runs this tree's dist/ (build first). With --op refresh, scenario 3's refreshes instead (the devices
 * are provisioned first, outside the sampling).
 *   node --experimental-websocket --import tsx tools/bench/ab/s2-alloc.ts OUT.heapprofile [--window-ms MS (3000)] [--op refresh]
 */
import { writeFileSync } from 'node:fs';
import { LoadGenerator, startIdprov } from '../lib/procs.ts';
import { freeTcpPort, pinning } from '../lib/sys.ts';
import { QUICK, load, provideDevices, type Ctx } from '../scenarios.ts';

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}

const out = process.argv[2] ?? 'scenario2.heapprofile';
const at = process.argv.indexOf('--window-ms');
const windowMs = at >= 0 ? Number(process.argv[at + 1]) : 3000;
const op = process.argv.includes('--op') && process.argv[process.argv.indexOf('--op') + 1] === 'refresh' ? 'refresh' : 'prov';
const cpu = pinning();
const port = await freeTcpPort();
const gen = await LoadGenerator.start(cpu.generator);
const ctx: Ctx = { mode: QUICK, gen, cpu, log: () => {} };
const srv = await startIdprov({ cpu: cpu.server, nodeArgs: [`--inspect=127.0.0.1:${port}`] });
try {
  await provideDevices(ctx, srv, Math.ceil((3000 * (QUICK.warmupMs + windowMs)) / 1000), true);
  const [target] = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
  const ws = new WebSocket(target!.webSocketDebuggerUrl);
  await new Promise((r) => ws.addEventListener('open', r, { once: true }));
  let nextId = 1;
  const waiting = new Map<number, (v: unknown) => void>();
  ws.addEventListener('message', (e) => {
    const m = JSON.parse(String(e.data)) as { id?: number; result?: unknown };
    if (m.id !== undefined) waiting.get(m.id)?.(m.result);
  });
  const call = (method: string, params: object = {}): Promise<unknown> =>
    new Promise((resolve) => {
      const id = nextId++;
      waiting.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  if (op === 'refresh') {
    await load(ctx, { kind: 'closed', op: 'prov', target: { host: '127.0.0.1', port: srv.coapPort }, concurrency: 16, warmupMs: 0, durationMs: QUICK.warmupMs + windowMs, maxOps: 1_000_000, serverPid: srv.pid });
    const p = await ctx.gen.run({ kind: 'prepare-refresh' });
    if (!p.ok) throw new Error(p.error);
  }
  await call('HeapProfiler.enable');
  await call('HeapProfiler.startSampling', { samplingInterval: 8192, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  const res = await load(ctx, { kind: 'closed', op, target: { host: '127.0.0.1', port: srv.coapPort }, concurrency: 16, warmupMs: QUICK.warmupMs, durationMs: windowMs, maxOps: 1_000_000, serverPid: srv.pid });
  const { profile } = (await call('HeapProfiler.stopSampling')) as { profile: { head: Node } };
  ws.close();
  writeFileSync(out, JSON.stringify(profile));
  // Warm-up included: the sampler ran over both.
  const ops = res.ops * ((QUICK.warmupMs + windowMs) / windowMs);
  const self = new Map<string, number>();
  const walk = (n: Node): void => {
    const f = n.callFrame;
    const k = `${f.functionName || '(anon)'} ${f.url.replace(/.*\/(dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}`;
    self.set(k, (self.get(k) ?? 0) + n.selfSize);
    n.children.forEach(walk);
  };
  walk(profile.head);
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  console.log(`~${Math.round(ops)} ${op === 'prov' ? 'provisionings' : 'refreshes'}, ~${Math.round(total / ops)} bytes allocated per operation (sampled)`);
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log(String(Math.round(v / ops)).padStart(7), 'B/op', k);
} finally {
  await srv.stop();
  await gen.stop();
}
