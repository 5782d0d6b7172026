/**
 * The first admin token (issue 14): the server writes `<data>/admin.token` (mode 0600) on first start,
 * with a lifetime of `adminTokenTtl`, so that `oob` and the page work out of the box. At every start
 * the token in the file is checked against the token registry: an expired one, or one the registry
 * does not know (minted by a version before the registry), is replaced by a fresh one; a revoked one
 * is left alone (an admin revoked it, perhaps because the file leaked) with a warning. docs/operations.md
 * "Admin tokens" tells how to rotate it.
 */
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from '../log.ts';
import type { AdminAuth } from './auth.ts';

/** Make sure `file` holds a usable admin token (see the file comment); returns what was done. */
export async function ensureAdminTokenFile(file: string, auth: AdminAuth, ttlS: number, now: number, log: Logger): Promise<'kept' | 'written' | 'replaced' | 'revoked'> {
  let action: 'written' | 'replaced' = 'written';
  if (existsSync(file)) {
    const old = readFileSync(file, 'utf8').trim();
    const { state, jti } = await auth.check(old, now);
    if (state === 'valid') {
      chmodSync(file, 0o600);
      return 'kept';
    }
    if (state === 'revoked') {
      log.warn({ file, jti }, 'the admin token in this file is revoked; delete the file and restart for a new one (or mint one with `idprov token create --role admin`)');
      chmodSync(file, 0o600);
      return 'revoked';
    }
    log.warn({ file, state, jti }, state === 'expired' ? 'the admin token in this file expired: writing a new one' : 'the admin token in this file is not in the token registry (minted by an older version): writing a new one');
    action = 'replaced';
  }
  const { token, record } = await auth.mintRecord({ name: 'admin', role: 'admin', ttlS }, now, { by: 'system' });
  // Written beside the old file and renamed over it: a reader never sees half a token.
  const tmp = `${file}.new`;
  writeFileSync(tmp, `${token}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  log.info({ file, jti: record.jti, expiresAt: record.expiresAt === null ? null : new Date(record.expiresAt * 1000).toISOString() }, 'wrote an admin token (keep it secret; `idprov token create` mints more)');
  return action;
}
