/**
 * The SQLite writer's one-statement fast path for a group of the common provisioning mutations (see
 * {@link BATCH_SCHEMA}).
 */
import type { Mutation } from '../store.ts';
import { DEVICE_COLS, PENDING_COLS, deviceParams, eventParams, hex, onConflictReplace, pendingParams, type Param } from '../rows.ts';

/**
 * The group-commit fast path: one INSERT into this TEMP view writes a whole group of the common
 * mutations (a provisioning's device row, allowlist consumption, waiting-request row, events) in ONE
 * statement — one thread-pool round trip and one implicit (autocommit) transaction — instead of
 * `BEGIN`, one statement per mutation and `COMMIT`. Each column is a JSON array (or NULL) of one
 * kind's rows, unpacked by the INSTEAD OF trigger; see {@link batchOf} for the element layouts and
 * for which groups qualify. The statement is atomic: when any part fails (an `allow.consume` of a
 * missing or consumed entry RAISEs, or a CHECK fails), SQLite undoes all of it and the caller runs
 * the group through the general path, which finds the failing call. TEMP objects live in this
 * connection only and are not part of the schema (no migration).
 */
export const BATCH_SCHEMA = `
  CREATE TEMP VIEW apply_batch (consumes, devices, pending_deletes, pendings, pending_seen, events) AS SELECT NULL, NULL, NULL, NULL, NULL, NULL;
  CREATE TEMP TRIGGER apply_batch_insert INSTEAD OF INSERT ON apply_batch BEGIN
    SELECT RAISE(ABORT, 'idprov batch: allowlist entry is missing or already consumed')
      WHERE EXISTS (SELECT 1 FROM json_each(NEW.consumes) j LEFT JOIN allowlist a ON a.id = j.value->>0
                    WHERE a.id IS NULL OR a.consumed_at IS NOT NULL);
    UPDATE allowlist SET consumed_at = j.value->>1 FROM json_each(NEW.consumes) j WHERE allowlist.id = j.value->>0;
    INSERT INTO devices (${DEVICE_COLS.join(', ')})
      SELECT value->>0, unhex(value->>1), unhex(value->>2), value->>3, value->>4, value->>5, value->>6, value->>7, value->>8, value->>9
      FROM json_each(NEW.devices) WHERE true
      ${onConflictReplace('id', DEVICE_COLS)};
    DELETE FROM pending WHERE id IN (SELECT value FROM json_each(NEW.pending_deletes));
    INSERT INTO pending (${PENDING_COLS.join(', ')})
      SELECT ${PENDING_COLS.map((c, i) => (c === 'pk' || c === 'mac' ? `unhex(value->>${i})` : `value->>${i}`)).join(', ')}
      FROM json_each(NEW.pendings) WHERE true
      ${onConflictReplace('id', PENDING_COLS)};
    UPDATE pending SET last_seen = j.value->>1, count = j.value->>2, source = j.value->>3
      FROM json_each(NEW.pending_seen) j WHERE pending.id = j.value->>0;
    INSERT INTO events (at, kind, device_id, actor, source, detail)
      SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5 FROM json_each(NEW.events) ORDER BY key;
  END;
`;

/**
 * The parameters of `WRITE_SQL.applyBatch` for `group`, or undefined when the group cannot take
 * the fast path: a mutation kind other than the six below, or one row (allowlist entry, device,
 * waiting request) touched twice — the trigger applies kinds in a fixed order, which is only the
 * calls' order when no two mutations touch the same row. Events keep their order (json_each key).
 */
export function batchOf(group: readonly { readonly mutations: readonly Mutation[] }[]): Param[] | undefined {
  const consumes: unknown[] = [];
  const devices: unknown[] = [];
  const pendingDeletes: string[] = [];
  const pendings: unknown[] = [];
  const seen: unknown[] = [];
  const events: unknown[] = [];
  const touched = new Set<string>();
  const touch = (key: string): boolean => touched.size !== touched.add(key).size;
  for (const call of group) {
    for (const m of call.mutations) {
      switch (m.kind) {
        case 'allow.consume':
          if (!touch(`a${m.id}`)) return undefined;
          consumes.push([m.id, m.at]);
          break;
        case 'device.upsert':
          if (!touch(`d${m.device.id}`)) return undefined;
          devices.push(deviceParams(m.device, hex));
          break;
        case 'pending.delete':
          if (!touch(`p${m.id}`)) return undefined;
          pendingDeletes.push(m.id);
          break;
        case 'pending.upsert':
          if (!touch(`p${m.pending.id}`)) return undefined;
          pendings.push(pendingParams(m.pending, hex));
          break;
        case 'pending.seen':
          if (!touch(`p${m.id}`)) return undefined;
          seen.push([m.id, m.lastSeen, m.count, m.source]);
          break;
        case 'event':
          events.push(eventParams(m.event));
          break;
        case 'nonce.use':
          break; // nothing to write here (see the writer's applyOne)
        default:
          return undefined;
      }
    }
  }
  const json = (a: unknown[]): string | null => (a.length > 0 ? JSON.stringify(a) : null);
  return [json(consumes), json(devices), json(pendingDeletes), json(pendings), json(seen), json(events)];
}
