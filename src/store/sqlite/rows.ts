/**
 * SQLite's own row shape: the positional slots that let {@link READ_SQL.loadSubject} read the four
 * subject tables as one `UNION ALL`. Everything else maps rows with the shared builders of
 * `../rows.ts`.
 */
import type { SubjectRecords } from '../../domain.ts';
import { allowFromRow, deviceFromRow, pendingFromRow, revocationFromRow, type Row } from '../rows.ts';

/**
 * Reads of the four subject tables project their columns onto shared positional slots (b = blob,
 * n = integer, s = text), so that `loadSubject` can fetch all four as one `UNION ALL` of at most four
 * narrow rows — one statement, hence one consistent snapshot. It measured faster than a LEFT JOIN of
 * all 33 columns (node-sqlite3 pays per column converted) and than four separate gets (one thread-pool
 * round trip each). {@link subjectFromSlots} names the slots again and maps them with the shared
 * builders.
 */
const SLOTS = ['b1', 'b2', 'n1', 'n2', 'n3', 'n4', 'n5', 's1', 's2', 's3', 's4'] as const;
type Slot = (typeof SLOTS)[number];
type SubjectKind = 'allow' | 'device' | 'pending' | 'revocation';
const PROJECTION: Readonly<Record<SubjectKind, Partial<Record<Slot, string>>>> = {
  allow: { b1: 'pk', b2: 'mac', n1: 'type', n2: 'expires', n3: 'created_at', n4: 'consumed_at', s1: 'secret' },
  device: {
    b1: 'pk', b2: 'mac', n1: 'type', n2: 'provisioned_at', n3: 'last_seen', n4: 'token_exp',
    s1: 'via', s2: 'source', s3: 'last_cti',
  },
  pending: {
    b1: 'pk', b2: 'mac', n1: 'type', n2: 'first_seen', n3: 'last_seen', n4: 'count', n5: 'decided_at',
    s1: 'status', s2: 'source', s3: 'decided_by', s4: 'decided_reason',
  },
  revocation: { n1: 'at', s1: 'by', s2: 'reason' },
};
/** The slot tag each table's rows carry in the union (column `t`). */
const TAG: Readonly<Record<string, SubjectKind>> = { a: 'allow', d: 'device', p: 'pending', r: 'revocation' };
const ENTRIES = Object.fromEntries(
  (Object.keys(PROJECTION) as SubjectKind[]).map((k) => [k, Object.entries(PROJECTION[k]) as Array<[Slot, string]>]),
) as Record<SubjectKind, Array<[Slot, string]>>;

/** `col AS slot, …` of `kind`, every slot present (NULL when unused), as UNION ALL needs. */
export function projectSlots(kind: SubjectKind): string {
  const p = PROJECTION[kind];
  return SLOTS.map((slot) => `${p[slot] ?? 'NULL'} AS ${slot}`).join(', ');
}

/** The records of `id` from the union's rows (at most one per table, tagged in column `t`). */
export function subjectFromSlots(rows: readonly Row[], id: string): SubjectRecords {
  const out: SubjectRecords = {};
  for (const r of rows) {
    const kind = TAG[r.t as string]!;
    const named: Row = { id };
    for (const [slot, col] of ENTRIES[kind]) named[col] = r[slot];
    if (kind === 'allow') out.allow = allowFromRow(named);
    else if (kind === 'device') out.device = deviceFromRow(named);
    else if (kind === 'pending') out.pending = pendingFromRow(named);
    else out.revocation = revocationFromRow(named);
  }
  return out;
}
