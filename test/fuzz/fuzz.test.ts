/**
 * The fuzzing harness in CI (docs/fuzzing.md): every target replays its committed corpus
 * (fixtures/fuzz/<target>/) through its oracle, then runs 2,000 coverage-guided mutations from a fixed
 * seed — bounded by count, not time. Longer runs: `npm run fuzz -- <target> --time 300`.
 */
import assert from 'node:assert/strict';
import { decodeCbor } from '../../src/protocol/cbor.ts';
import { cborSpans, lengthenHead } from '../../tools/fuzz/cbor-items.ts';
import { Engine, runOne } from '../../tools/fuzz/engine.ts';
import { committedDir, readCorpus } from '../../tools/fuzz/files.ts';
import { mutate } from '../../tools/fuzz/mutate.ts';
import { Rng } from '../../tools/fuzz/rng.ts';
import { OracleError, type Target } from '../../tools/fuzz/target.ts';
import { TARGETS } from '../../tools/fuzz/targets/index.ts';

const EXECS = 2000;

const describeFinding = (f: { kind: string; message: string; input: Buffer; stack: string }): string => `${f.kind}: ${f.message}\n  input ${f.input.toString('hex')}\n${f.stack}`;

describe('fuzz targets (tools/fuzz)', function () {
  this.timeout(180_000);

  for (const target of TARGETS.values()) {
    describe(target.name, () => {
      it('has a committed corpus, and every input in it passes the oracle', () => {
        const corpus = readCorpus(committedDir(target.name));
        assert.ok(corpus.length > 0, `fixtures/fuzz/${target.name}/ is empty: run npm run fuzz -- ${target.name} --init-corpus`);
        for (const input of corpus) {
          const f = runOne(target, input);
          assert.equal(f, undefined, f && describeFinding(f));
        }
      });

      it(`finds nothing in ${EXECS.toLocaleString('en')} coverage-guided mutations of that corpus (seed 1)`, () => {
        const e = new Engine(target, { seed: 1 });
        e.start();
        try {
          for (const input of readCorpus(committedDir(target.name))) e.exec(input, true);
          const before = e.execs;
          e.loop({ iterations: EXECS });
          assert.ok(e.execs - before >= EXECS);
          assert.ok(e.features.size > 0, 'no coverage was recorded');
        } finally {
          e.stop();
        }
        assert.deepEqual(e.findings.map(describeFinding), []);
      });
    });
  }
});

describe('the fuzzing engine', function () {
  this.timeout(60_000);

  const toy = (run: (b: Buffer) => void): Target => ({ name: 'toy', about: '', watch: ['/test/fuzz/'], maxLen: 64, dictionary: [], cbor: false, seeds: () => [], run });

  it('grows its corpus by coverage: from one zero byte it reaches CBOR maps, arrays and strings', () => {
    const e = new Engine(TARGETS.get('cbor')!, { seed: 3 });
    e.start();
    try {
      e.exec(Buffer.from([0]), true);
      const first = e.features.size;
      e.loop({ iterations: EXECS });
      assert.ok(e.features.size > first, `features ${first} → ${e.features.size}`);
      assert.ok(e.corpus.length > 5, `corpus ${e.corpus.length}`);
      const majors = new Set(e.corpus.map((b) => b[0]! >> 5));
      assert.ok(majors.size >= 4, `major types reached: ${[...majors].join(', ')}`);
    } finally {
      e.stop();
    }
  });

  it('reports an unexpected exception as a crash and a broken invariant as an oracle finding, with the input', () => {
    const t = toy((b) => {
      if (b[0] === 1) throw new TypeError('boom');
      if (b[0] === 2) throw new OracleError('round trip differs');
    });
    assert.equal(runOne(t, Buffer.from([0])), undefined);
    const crash = runOne(t, Buffer.from([1, 9]))!;
    assert.equal(crash.kind, 'crash');
    assert.match(crash.message, /TypeError: boom/);
    assert.deepEqual([...crash.input], [1, 9]);
    assert.equal(runOne(t, Buffer.from([2]))!.kind, 'oracle');
    assert.equal(runOne(t, Buffer.from([0]), -1)!.kind, 'slow', 'an input over the time limit is a finding');
  });

  it('finds a crash behind a two-byte condition by mutation, and reports it once', () => {
    const t = toy((b) => {
      if (b.length >= 2 && b[0] === 0xa2 && b[1] === 0x18) throw new RangeError('deep');
    });
    const e = new Engine(t, { seed: 5, coverage: false });
    e.exec(Buffer.from([0xa2, 0x00]), true);
    e.loop({ iterations: 20_000 });
    assert.equal(e.findings.length, 1);
    assert.equal(e.findings[0]!.kind, 'crash');
  });

  it('mutates deterministically for a seed and never beyond maxLen', () => {
    const ctx = (seed: number) => ({ rng: new Rng(seed), maxLen: 40, dictionary: [Buffer.from('abc')], corpus: [Buffer.from('a2016161026162', 'hex')], cbor: true });
    const a = ctx(9);
    const b = ctx(9);
    let x: Buffer = Buffer.from('a2016161026162', 'hex');
    let y: Buffer = Buffer.from(x);
    for (let i = 0; i < 500; i++) {
      x = mutate(x, a);
      y = mutate(y, b);
      assert.ok(x.length <= 40);
      assert.deepEqual(x, y);
    }
  });

  it('lengthens a CBOR head to a non-shortest form of the same value', () => {
    for (const h of ['01', '17', '1818', '19ffff', '20', '6161', '820102', 'a10102', 'd81201']) {
      const b = Buffer.from(h, 'hex');
      const span = cborSpans(b)[0]!;
      const head = lengthenHead(b, span)!;
      const longer = Buffer.concat([head, b.subarray(span.headEnd)]);
      assert.ok(longer.length > b.length, h);
      assert.deepEqual(decodeCbor(longer), decodeCbor(b), `${h} → ${longer.toString('hex')}`);
    }
  });
});
