/**
 * Mocha `require` hook: many tests spawn the bins (bin/*.js), which run the compiled JavaScript in
 * dist/. Rebuild it (incrementally) when a source is newer than the last build, so a test never runs
 * stale code, also for a single `npx mocha test/x.test.ts`.
 */
import { build, isStale } from '../../tools/build.mjs';

if (isStale()) {
  process.stderr.write('dist/ is older than the sources: building (tools/build.mjs)\n');
  build({ clean: false });
}
