/**
 * The C device library's unit tests (device/test/*.c), one `it` per C test, built with CMake into
 * device/build/host; then the same binaries under AddressSanitizer + UndefinedBehaviorSanitizer
 * (clang) and under valgrind, each run as its own `it`.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_TABLE } from '../../src/errors.ts';
import { DEVICE, ROOT, TEST_BINARIES, cmakeBuild, detailsOf, hostBuild, listTests, runTests, sentence, type RunResult } from '../support/c-library.ts';

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

describe('device library (C): error codes', () => {
  const header = readFileSync(join(DEVICE, 'include/idprov.h'), 'utf8');
  const names = /srv\[\] = \{([^}]*)\}/.exec(readFileSync(join(DEVICE, 'src/errors.c'), 'utf8'))![1]!.match(/"[^"]*"/g)!.map((x) => JSON.parse(x) as string);
  const values = new Map([...header.matchAll(/\b(IDPROV_E_[A-Z_]+|IDPROV_ERR_[A-Z_]+|IDPROV_OK) = (-?\d+)/g)].map((m) => [m[1]!, Number(m[2])]));

  it('gives every err of the server\'s error table the same number and name in idprov_err_t', () => {
    for (const [code, info] of Object.entries(ERROR_TABLE)) {
      // 4.13 and 4.15 carry no err (no CBOR body, spec §1.4); the library reports them by CoAP code as 13 and 14
      if (info.err === undefined || info.coap === '4.13' || info.coap === '4.15') continue;
      assert.equal(names[info.err], code, `err ${info.err}`);
    }
    assert.equal(names[13], 'too-large');
    assert.equal(names[14], 'unsupported-content-format');
    assert.equal(values.get('IDPROV_E_CONTENT_FORMAT'), 14);
  });

  it('documents every idprov_err_t value in docs/device.md', () => {
    const doc = readFileSync(join(ROOT, 'docs/device.md'), 'utf8');
    assert.ok(values.size >= 27, [...values.keys()].join(' '));
    for (const [name, v] of values) assert.match(doc, new RegExp(`\\| ${v < 0 ? '−' + -v : v} \\| \`${name}\``), name);
  });
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
