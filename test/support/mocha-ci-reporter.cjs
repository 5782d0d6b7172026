// mocha reporter: the spec reporter, plus the plain closing line "N passed, N failed[, N skipped]"
// that CI reads, also written to .ci-summary.json for .ci/run.
'use strict';
const Mocha = require('mocha');
const fs = require('node:fs');

class CiReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once('end', () => {
      const s = this.stats;
      const line = `${s.passes} passed, ${s.failures} failed${s.pending ? `, ${s.pending} skipped` : ''}`;
      fs.writeFileSync('.ci-summary.json', JSON.stringify({ passes: s.passes, failures: s.failures, pending: s.pending, line }));
      console.log(line);
    });
  }
}
module.exports = CiReporter;
