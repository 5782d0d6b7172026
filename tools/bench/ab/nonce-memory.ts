/**
 * Memory of the used-once nonce set (issue 17): N real nonces (protocol/nonce.ts) spread over a
 * 300 s validity window, as N / 300 requests a second would leave, then the V8 heap used, the
 * external memory and the array buffers held by them, after a full GC, against an empty start;
 * and the time per `use` + `has` pair. Run from each tree to compare:
 *   node --expose-gc --import tsx tools/bench/ab/nonce-memory.ts [N=300000] [TREE (whose src/service/nonces.ts; this one)]
 */
import { randomBytes } from 'node:crypto';
import { makeNonce } from '../../../src/protocol/nonce.ts';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';

const tree = process.argv[3] ?? fileURLToPath(new URL('../../..', import.meta.url));
const { UsedNonces } = (await import(pathToFileURL(join(tree, 'src/service/nonces.ts')).href)) as typeof import('../../../src/service/nonces.ts');

const n = Number(process.argv[2] ?? 300_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const now = 1_767_225_600;
const secret = randomBytes(32);
const nonces = Array.from({ length: n }, (_, i) => makeNonce(secret, `dev-${i % 5000}`, now + 1 + Math.floor((i * 300) / n), randomBytes(8), '192.0.2.1:5683'));
const mem = (): { heap: number; external: number } => {
  gc();
  gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, external: m.external + m.arrayBuffers };
};
const used = new UsedNonces(50_000_000);
const before = mem();
const t0 = process.hrtime.bigint();
for (const x of nonces) {
  used.has(x, x.readUInt32BE(0));
  used.use(x, x.readUInt32BE(0), now);
}
const t1 = process.hrtime.bigint();
const after = mem();
// The nonces stay referenced until here, so only the set's own memory is counted.
if (used.size !== n || nonces.length !== n) throw new Error(`size ${used.size}`);
const per = (b: number): string => ((b) / n).toFixed(1);
console.log(JSON.stringify({ nonces: n, heapBytesPerNonce: per(after.heap - before.heap), externalBytesPerNonce: per(after.external - before.external), nsPerUseAndHas: Number(t1 - t0) / n }));
