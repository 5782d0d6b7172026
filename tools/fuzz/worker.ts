/**
 * The fuzzing loop inside a worker thread (started by cli.ts through worker-boot.mjs). Before each
 * input it copies the input and bumps a counter in shared memory, so the main thread can tell a hang
 * and save the input that caused it even though this thread never returns.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Engine } from './engine.ts';
import { readCorpus, saveFinding, saveInput } from './files.ts';
import { TARGETS } from './targets/index.ts';

export interface WorkerJob {
  target: string;
  seed: number;
  corpusDirs: string[];
  saveDir: string;
  crashDir: string;
  slowMs: number;
  coverage: boolean;
  untilEpochMs: number;
  runs: number;
  shared: SharedArrayBuffer;
}

const job = workerData as WorkerJob;
const target = TARGETS.get(job.target)!;
const beat = new Int32Array(job.shared, 0, 2);
const cur = new Uint8Array(job.shared, 8);

const engine = new Engine(target, {
  seed: job.seed,
  coverage: job.coverage,
  slowMs: job.slowMs,
  beforeRun(input) {
    const n = Math.min(input.length, cur.length);
    cur.set(input.subarray(0, n));
    Atomics.store(beat, 1, n);
    Atomics.add(beat, 0, 1);
  },
  onNew: (input) => saveInput(job.saveDir, input),
  onFinding(f) {
    const path = saveFinding(job.crashDir, job.target, f);
    parentPort!.postMessage({ type: 'finding', kind: f.kind, message: f.message, path });
  },
});

engine.start();
let loaded = 0;
for (const dir of job.corpusDirs) {
  for (const input of readCorpus(dir)) {
    engine.exec(input, true);
    loaded++;
  }
}
const initial = engine.features.size;
parentPort!.postMessage({ type: 'loaded', inputs: loaded, features: initial });
const t0 = Date.now();
let lastReport = t0;
while (Date.now() < job.untilEpochMs && engine.execs < job.runs) {
  engine.loop({ iterations: Math.min(256, job.runs - engine.execs) });
  const now = Date.now();
  if (now - lastReport >= 1000) {
    lastReport = now;
    parentPort!.postMessage({ type: 'stats', execs: engine.execs, corpus: engine.corpus.length, features: engine.features.size, findings: engine.findings.length, ms: now - t0 });
  }
}
engine.stop();
parentPort!.postMessage({ type: 'done', execs: engine.execs, corpus: engine.corpus.length, features: engine.features.size, initialFeatures: initial, findings: engine.findings.length, ms: Date.now() - t0, growth: engine.growth });
