/** Reading the repository's fixtures for seeds. */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { hexStrings } from '../target.ts';

export const ROOT = new URL('../../../', import.meta.url).pathname;

/** A JSON fixture under fixtures/. */
export function fixture(path: string): unknown {
  return JSON.parse(readFileSync(join(ROOT, 'fixtures', path), 'utf8'));
}

/** Every hex value in the JSON fixtures named. */
export function hexFrom(...paths: string[]): Buffer[] {
  const out: Buffer[] = [];
  for (const p of paths) hexStrings(fixture(p), out);
  return out;
}

/** A text fixture's bytes. */
export function fileBytes(path: string): Buffer {
  return readFileSync(join(ROOT, 'fixtures', path));
}

/** The protocol fixture files (fixtures/protocol/*.json). */
export function protocolFixtures(): string[] {
  return readdirSync(join(ROOT, 'fixtures', 'protocol'))
    .filter((f) => f.endsWith('.json'))
    .map((f) => `protocol/${f}`);
}
