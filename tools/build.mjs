#!/usr/bin/env node
/**
 * Builds dist/: the TypeScript of src/, tools/device-sim and tools/oob compiled by `tsc -p
 * tsconfig.build.json`, plus the files the server reads at run time (the admin page: src/admin/page.html, page.js, page.css).
 *
 *   node tools/build.mjs             clean build (npm run build; prepack, so a tarball holds no stale file)
 *   node tools/build.mjs --if-stale  incremental build, only when a source is newer than the last build:
 *                                    `prepare` (npm ci in a clone; also every first `npx idprov` in a
 *                                    clone, which installs the folder into npx's cache) and the mocha
 *                                    hook test/support/mocha-build-dist.mjs (tests spawn the bins)
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const dist = join(root, 'dist');
const stamp = join(dist, '.build-stamp');
/** What the build reads: a change to any of these makes dist/ stale. */
const inputs = ['src', 'tools/device-sim', 'tools/oob', 'tsconfig.json', 'tsconfig.build.json', 'package.json'];
/** Non-TypeScript files copied next to their compiled modules. */
const ASSET = /\.(html|css|js)$/;

function* walk(p) {
  const st = statSync(p);
  if (!st.isDirectory()) return yield [p, st];
  for (const e of readdirSync(p)) yield* walk(join(p, e));
}

/** Newest modification time (ms) among the inputs. */
function newestInput() {
  let t = 0;
  for (const i of inputs) for (const [, st] of walk(join(root, i))) t = Math.max(t, st.mtimeMs);
  return t;
}

/** True when dist/ is missing or older than a source. */
export function isStale() {
  return !existsSync(stamp) || statSync(stamp).mtimeMs < newestInput();
}

/** Compile and copy the assets; `clean` removes dist/ (and the incremental build info) first. */
export function build({ clean = true } = {}) {
  if (clean) rmSync(dist, { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });
  for (const [file] of walk(join(root, 'src'))) {
    if (!ASSET.test(file)) continue;
    const to = join(dist, relative(root, file));
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(file, to);
  }
  writeFileSync(stamp, `${new Date().toISOString()}\n`);
}

if (process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) {
  if (process.argv.includes('--if-stale')) {
    if (isStale()) build({ clean: false });
  } else build();
}
