/** The shared test vectors. */
import { readFileSync } from 'node:fs';

/** The independent implementation's vectors (fixtures/vectors/idprov-v1.json; explained in docs/spec/vectors.md). */
export const V = JSON.parse(readFileSync(new URL('../../fixtures/vectors/idprov-v1.json', import.meta.url), 'utf8'));
