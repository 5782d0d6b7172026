/** Every fuzz target by name. */
import type { Target } from '../target.ts';
import { ALLOWLIST_TARGETS } from './allowlist.ts';
import { PROTOCOL_TARGETS } from './protocol.ts';
import { TRANSPORT_TARGETS } from './transport.ts';

export const TARGETS: ReadonlyMap<string, Target> = new Map([...TRANSPORT_TARGETS, ...PROTOCOL_TARGETS, ...ALLOWLIST_TARGETS].map((t) => [t.name, t]));
