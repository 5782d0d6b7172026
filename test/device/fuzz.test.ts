/**
 * libFuzzer (Debian clang, -fsanitize=fuzzer,address,undefined) over every decoder of the C library,
 * seeded with the fixture messages, for a bounded number of runs each (CI budget: seconds).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { tempDir } from '../support/temp-dir.ts';
import { DEVICE, ROOT, cmakeBuild } from '../support/c-library.ts';

const TARGETS = ['cbor', 'sign1', 'claims', 'keyset', 'response', 'coap', 'mdns'] as const;
const RUNS = 50_000;

describe('device library (C): libFuzzer over every decoder', function () {
  this.timeout(300_000);
  let dir: string;
  let seeds: string;
  let tmp: ReturnType<typeof tempDir>;

  before(() => {
    const b = cmakeBuild('fuzz', ['-DIDPROV_FUZZ=ON', '-DCMAKE_C_COMPILER=clang'], TARGETS.map((t) => `fuzz_${t}`));
    assert.equal(b.error, undefined, b.error);
    dir = b.dir;
    tmp = tempDir('idprov-fuzz-');
    seeds = join(tmp.dir, 'seeds');
    execFileSync(process.execPath, [join(DEVICE, 'fuzz/seed-corpus.mjs'), ROOT, seeds]);
  });
  after(() => tmp?.cleanup());

  for (const t of TARGETS) {
    it(`finds no crash, leak or undefined behaviour in the ${t} decoder in ${RUNS} runs`, () => {
      const corpus = join(tmp.dir, `corpus-${t}`);
      execFileSync('mkdir', ['-p', corpus]);
      const r = spawnSync('nice', ['-n', '10', join(dir, `fuzz_${t}`), `-runs=${RUNS}`, '-seed=1', corpus, join(seeds, t)], { encoding: 'utf8', timeout: 240_000 });
      const out = `${r.stdout}${r.stderr}`;
      assert.equal(r.status, 0, out.slice(-4000));
      assert.match(out, new RegExp(`Done ${RUNS} runs`), out.slice(-2000));
    });
  }
});
