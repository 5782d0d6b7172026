#!/usr/bin/env node
// Entry point of `npx device-sim`: loads the TypeScript sources through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
await import('../tools/device-sim/main.ts');
