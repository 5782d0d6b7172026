/**
 * Allowlist uploads through the sidecar: parse (CSV or JSON), validate every row, and upsert in one
 * transaction — all or nothing by default (`mode: 'valid'` imports the valid rows and reports the
 * rest). Every bad row is reported with its line number (the first 1000 are listed).
 */
import type { Readable } from 'node:stream';
import { ProvError } from '../errors.ts';
import { parseAllowlist, type RowProblem } from '../protocol/allowlist.ts';
import type { Actor, AdminService } from '../service/admin.ts';
import type { Store } from '../store/store.ts';

export interface ImportOptions {
  format: 'json' | 'auto';
  /** 'all': nothing is imported when any row is bad; 'valid': the valid rows are. */
  mode: 'all' | 'valid';
  actor: Actor;
}

export interface ImportResult {
  /** True when rows were written. */
  imported: boolean;
  rows: number;
  added: number;
  updated: number;
  invalid: number;
  errors: RowProblem[];
  warnings: RowProblem[];
}

const MAX_LISTED = 1000;

export class AllowlistImporter {
  constructor(
    private readonly store: Store,
    private readonly admin: AdminService,
    private readonly now: () => number,
    private readonly minSecretLength: number,
  ) {}

  async import(source: Readable | string, opts: ImportOptions): Promise<ImportResult> {
    let text: string;
    if (typeof source === 'string') text = source;
    else {
      const chunks: Buffer[] = [];
      for await (const c of source) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
      text = Buffer.concat(chunks).toString('utf8');
    }
    if (opts.format === 'json' && !text.trimStart().startsWith('[')) throw new ProvError('malformed', 'a JSON allowlist must be an array');
    const parsed = parseAllowlist(text, { now: this.now(), minSecretLength: this.minSecretLength });
    const result: ImportResult = {
      imported: false,
      rows: parsed.entries.length + parsed.errors.length,
      added: 0,
      updated: 0,
      invalid: parsed.errors.length,
      errors: parsed.errors.slice(0, MAX_LISTED),
      warnings: parsed.warnings.slice(0, MAX_LISTED),
    };
    if ((parsed.errors.length && opts.mode === 'all') || parsed.entries.length === 0) return result;
    const before = (await this.store.counts()).allowlist;
    await this.admin.importAllowlist(parsed.entries, opts.actor, 'sidecar');
    const after = (await this.store.counts()).allowlist;
    result.imported = true;
    result.added = after - before;
    result.updated = parsed.entries.length - result.added;
    return result;
  }
}
