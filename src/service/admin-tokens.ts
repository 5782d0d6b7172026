/**
 * Admin-API bearer tokens (issue #3; lifecycle issue 14): JWTs (EdDSA, jose) signed by a server admin
 * key kept in the database, each with an ID (`jti`) recorded in the store's admin-token registry when
 * it is minted. Verification checks the signature, the expiry, and then the registry on every request
 * — no cache, so a revocation takes effect at once on every instance sharing the database. A token
 * with no registry record (minted before the registry existed, or by another database) is refused.
 * Roles: `admin` (everything) and `hub` (read devices, keys, events, verify tokens; no changes). The
 * clock is passed in.
 */
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import type { AdminTokenRecord } from '../domain.ts';
import { ProvError } from '../errors.ts';
import type { Page, Store } from '../store/store.ts';
import type { Actor } from './admin.ts';
import { searchList } from './admin-queries.ts';

/** Admin roles; `admin` includes everything `hub` may do. */
export type Role = 'admin' | 'hub';
export const ROLES: readonly Role[] = ['admin', 'hub'];

/** Who a verified token speaks for. */
export interface Principal {
  name: string;
  role: Role;
  /** Token ID (the registry key). */
  jti: string;
}

/** Why {@link AdminAuth.check} refuses a token whose signature is good (for the start-up check of the admin token file). */
export type TokenState = 'valid' | 'expired' | 'revoked' | 'unknown' | 'invalid';

const ISSUER = 'idprov-admin';
const SETTING_KEY = 'admin.signing-key';
/** Longest token name (it shows in the audit trail). */
export const MAX_TOKEN_NAME = 64;
/** Longest revocation reason. */
export const MAX_REASON = 500;

/** True when `have` may do what `need` allows. */
export function roleAllows(have: Role, need: Role): boolean {
  return have === 'admin' || have === need;
}

export class AdminAuth {
  private constructor(
    private readonly store: Store,
    private readonly privateKey: KeyObject,
    private readonly publicKey: KeyObject,
  ) {}

  /** Load the admin signing key from the store, creating it on first start. */
  static async open(store: Store): Promise<AdminAuth> {
    let der = await store.getSetting(SETTING_KEY);
    if (!der) {
      const { privateKey } = generateKeyPairSync('ed25519');
      der = privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64');
      await store.apply([{ kind: 'setting.put', name: SETTING_KEY, value: der }]);
    }
    const priv = createPrivateKey({ key: Buffer.from(der, 'base64'), format: 'der', type: 'pkcs8' });
    return new AdminAuth(store, priv, createPublicKey(priv));
  }

  /**
   * Mint a bearer token and record it in the registry (durable before the token is returned).
   * `ttlS` 0 or absent = no expiry. With `actor`, an `admin.token.mint` event records who minted it.
   */
  async mint(p: { name: string; role: Role; ttlS?: number }, now: number, actor?: Actor): Promise<string> {
    return (await this.mintRecord(p, now, actor)).token;
  }

  /** {@link mint}, also returning the registry record. */
  async mintRecord(p: { name: string; role: Role; ttlS?: number }, now: number, actor?: Actor): Promise<{ token: string; record: AdminTokenRecord }> {
    if (!ROLES.includes(p.role)) throw new ProvError('malformed', `role must be one of ${ROLES.join(', ')}`);
    if (!p.name || p.name.length > MAX_TOKEN_NAME) throw new ProvError('malformed', `the token name must be 1..${MAX_TOKEN_NAME} characters`);
    const jti = randomBytes(12).toString('base64url');
    const jwt = new SignJWT({ role: p.role }).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' }).setIssuer(ISSUER).setSubject(p.name).setIssuedAt(now).setJti(jti);
    const expiresAt = p.ttlS ? now + p.ttlS : null;
    if (expiresAt !== null) jwt.setExpirationTime(expiresAt);
    const token = await jwt.sign(this.privateKey);
    const record: AdminTokenRecord = { jti, name: p.name, role: p.role, issuedAt: now, expiresAt, revokedAt: null, revokedBy: null, revokedReason: null };
    await this.store.apply([
      { kind: 'admin-token.put', token: record },
      ...(actor ? [{ kind: 'event' as const, event: { at: now, kind: 'admin.token.mint', actor: actor.by, ...(actor.source ? { source: actor.source } : {}), detail: { jti, name: p.name, role: p.role, expiresAt } } }] : []),
    ]);
    return { token, record };
  }

  /** The claims of a token whose signature and issuer are good (expiry not checked), or undefined. */
  private async claims(token: string, now: number, checkExpiry: boolean): Promise<{ name: string; role: Role; jti: string | undefined } | 'expired' | undefined> {
    try {
      const { payload } = await jwtVerify(token, this.publicKey, {
        issuer: ISSUER,
        algorithms: ['EdDSA'],
        currentDate: new Date(now * 1000),
        ...(checkExpiry ? {} : { clockTolerance: Number.MAX_SAFE_INTEGER }),
      });
      const role = payload['role'];
      if (typeof payload.sub !== 'string' || (role !== 'admin' && role !== 'hub')) return undefined;
      return { name: payload.sub, role, jti: typeof payload.jti === 'string' ? payload.jti : undefined };
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired) return 'expired';
      return undefined;
    }
  }

  /**
   * Verify a bearer token: signature, issuer, expiry, then its registry record (read on every call),
   * which must exist, be unrevoked and agree on name and role. @throws ProvError `unauthenticated`.
   */
  async verify(token: string, now: number): Promise<Principal> {
    const c = await this.claims(token, now, true);
    if (c === 'expired') throw new ProvError('unauthenticated', 'token expired');
    if (!c) throw new ProvError('unauthenticated', 'invalid token');
    const rec = c.jti ? await this.store.getAdminToken(c.jti) : undefined;
    if (!rec || rec.name !== c.name || rec.role !== c.role) throw new ProvError('unauthenticated', 'token unknown to the token registry (minted by an older version?); mint a new one with `idprov token create`');
    if (rec.revokedAt !== null) throw new ProvError('unauthenticated', 'token revoked');
    if (rec.expiresAt !== null && rec.expiresAt <= now) throw new ProvError('unauthenticated', 'token expired');
    return { name: rec.name, role: rec.role, jti: rec.jti };
  }

  /** What {@link verify} would say of `token`, as a state (for the start-up check of the admin token file). */
  async check(token: string, now: number): Promise<{ state: TokenState; jti?: string }> {
    const c = await this.claims(token, now, false);
    if (c === undefined || c === 'expired') return { state: 'invalid' };
    const rec = c.jti ? await this.store.getAdminToken(c.jti) : undefined;
    if (!rec || rec.name !== c.name || rec.role !== c.role) return { state: 'unknown' };
    if (rec.revokedAt !== null) return { state: 'revoked', jti: rec.jti };
    if (rec.expiresAt !== null && rec.expiresAt <= now) return { state: 'expired', jti: rec.jti };
    return { state: 'valid', jti: rec.jti };
  }

  /**
   * The registry, by jti (never the token text: it is not stored). `q`: a case-insensitive part of the
   * jti or the name, searched as the other lists are (at most 20,000 tokens looked at per request).
   */
  list(opts: { after?: string | undefined; limit: number; q?: string | undefined }): Promise<Page<AdminTokenRecord>> {
    return searchList(
      (o) => this.store.listAdminTokens({ limit: o.limit ?? opts.limit, ...(o.after !== undefined ? { after: o.after } : {}) }),
      opts,
      (t, q) => t.jti.toLowerCase().includes(q) || t.name.toLowerCase().includes(q),
      (t) => t.jti,
    );
  }

  get(jti: string): Promise<AdminTokenRecord | undefined> {
    return this.store.getAdminToken(jti);
  }

  /**
   * Revoke token `jti` at once (every instance on the database refuses it from its next request), with
   * an `admin.token.revoke` event. @throws ProvError `not-found`, `conflict` when already revoked.
   */
  async revoke(jti: string, reason: string | undefined, actor: Actor, now: number): Promise<AdminTokenRecord> {
    const rec = await this.store.getAdminToken(jti);
    if (!rec) throw new ProvError('not-found', `no token ${jti}`);
    if (rec.revokedAt !== null) throw new ProvError('conflict', `token ${jti} was already revoked by ${rec.revokedBy ?? '?'}`);
    if (reason !== undefined && reason.length > MAX_REASON) throw new ProvError('malformed', `reason: at most ${MAX_REASON} characters`);
    await this.store.apply([
      { kind: 'admin-token.revoke', jti, at: now, by: actor.by, reason: reason || null },
      {
        kind: 'event',
        event: { at: now, kind: 'admin.token.revoke', actor: actor.by, ...(actor.source ? { source: actor.source } : {}), detail: { jti, name: rec.name, role: rec.role, ...(reason ? { reason } : {}) } },
      },
    ]);
    return { ...rec, revokedAt: now, revokedBy: actor.by, revokedReason: reason || null };
  }
}
