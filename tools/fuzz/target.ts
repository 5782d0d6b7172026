/** What a fuzz target is: a parser, its oracle, where its seeds come from and what guides it. */

/** A broken invariant that is not an exception of the parser itself (a round trip that differs, ...). */
export class OracleError extends Error {
  override readonly name = 'OracleError';
}

/** Throw an {@link OracleError} unless `ok`. */
export function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new OracleError(what);
}

export interface Target {
  name: string;
  /** One line: what is fuzzed and what the oracle is. */
  about: string;
  /** Substrings of script URLs whose block coverage guides the fuzzer. */
  watch: string[];
  /** Longest input tried. */
  maxLen: number;
  /** Tokens the mutator inserts. */
  dictionary: Buffer[];
  /** Use CBOR-aware mutations. */
  cbor: boolean;
  /** The seed inputs, derived from fixtures/ (written to fixtures/fuzz/<name>/ by `--init-corpus`). */
  seeds(): Buffer[];
  /**
   * Run one input. Returns normally when the parser accepted it or refused it with its documented
   * error; throws anything else (an unexpected exception, or an {@link OracleError}).
   */
  run(input: Buffer): void;
}

/** Hex from fixture files (spaces allowed). */
export function unhex(h: string): Buffer {
  return Buffer.from(h.replace(/\s+/g, ''), 'hex');
}

/** Every string value in a JSON document that looks like hex bytes (≥ 2 hex digits, even length). */
export function hexStrings(doc: unknown, out: Buffer[] = []): Buffer[] {
  if (typeof doc === 'string') {
    const h = doc.replace(/\s+/g, '');
    if (h.length >= 2 && h.length % 2 === 0 && /^[0-9a-f]+$/i.test(h)) out.push(Buffer.from(h, 'hex'));
  } else if (Array.isArray(doc)) for (const x of doc) hexStrings(x, out);
  else if (doc && typeof doc === 'object') for (const x of Object.values(doc)) hexStrings(x, out);
  return out;
}

/** `b` split into tokens for a dictionary. */
export const tokens = (...xs: Array<string | number[]>): Buffer[] => xs.map((x) => (typeof x === 'string' ? Buffer.from(x, 'utf8') : Buffer.from(x)));
