#!/usr/bin/env node
// Entry point of `npx device-sim`: the compiled JavaScript in dist/ (`npm run build`; `npm ci` and
// `npm pack` build it through the "prepare" script).
import { existsSync } from 'node:fs';

const main = new URL('../dist/tools/device-sim/main.js', import.meta.url);
if (!existsSync(main)) {
  console.error('device-sim: dist/ is missing: run `npm run build` (npm ci does it through "prepare")');
  process.exit(1);
}
await import(main.href);
