/**
 * The C device library's unit tests (device/test/*.c), one `it` per C test, built with CMake into
 * device/build/host; then the same binaries under AddressSanitizer + UndefinedBehaviorSanitizer
 * (clang) and under valgrind, each run as its own `it`.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TEST_BINARIES, cmakeBuild, detailsOf, hostBuild, listTests, runTests, sentence, type RunResult } from './support.ts';

const host = hostBuild();

describe('device library (C): unit tests', () => {
  it('builds on the host with CMake, -Wall -Wextra -Werror -pedantic', () => {
    assert.equal(host.error, undefined, host.error);
  });
  for (const bin of TEST_BINARIES) {
    describe(bin, () => {
      let run: RunResult;
      before(() => {
        run = runTests(join(host.dir, bin));
      });
      for (const name of listTests(host, bin)) {
        it(sentence(name), () => {
          assert.ok(run.passed.has(name), detailsOf(run, name));
        });
      }
    });
  }
});

describe('device library (C): memory checkers', function () {
  this.timeout(600_000);

  it('runs every C test clean under AddressSanitizer and UndefinedBehaviorSanitizer', () => {
    const b = cmakeBuild('asan', ['-DIDPROV_SANITIZE=ON', '-DCMAKE_C_COMPILER=clang'], [...TEST_BINARIES]);
    assert.equal(b.error, undefined, b.error);
    for (const bin of TEST_BINARIES) {
      const r = runTests(join(b.dir, bin), [], { ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0', UBSAN_OPTIONS: 'print_stacktrace=1' });
      assert.equal(r.status, 0, `${bin}:\n${r.output.slice(-4000)}`);
      assert.equal(r.failed.size, 0);
      assert.ok(r.passed.size > 0, `${bin} ran no test`);
    }
  });

  it('runs every C test clean under valgrind (no invalid access, no leak)', () => {
    assert.equal(host.error, undefined, host.error);
    for (const bin of TEST_BINARIES) {
      // IDPROV_TEST_QUICK: the mutation tests use the 8 bit flips and 0xff per byte (valgrind is ~50x slower)
      const r = runTests('valgrind', ['-q', '--error-exitcode=97', '--leak-check=full', '--errors-for-leak-kinds=all', join(host.dir, bin)], { IDPROV_TEST_QUICK: '1' });
      assert.equal(r.status, 0, `${bin}:\n${r.output.slice(-4000)}`);
      assert.ok(r.passed.size > 0 && r.failed.size === 0, r.output.slice(-2000));
    }
  });
});
