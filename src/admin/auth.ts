/**
 * Admin sidecar authentication (issue #3): bearer JWTs (EdDSA, jose) signed by a server admin key kept
 * in the database (mode 0600). Roles: `admin` (everything) and `hub` (read devices, keys, events,
 * verify tokens; no changes). The clock is passed in.
 */
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { ProvError } from '../errors.ts';
import type { Store } from '../store/store.ts';

/** Admin roles; `admin` includes everything `hub` may do. */
export type Role = 'admin' | 'hub';
export const ROLES: readonly Role[] = ['admin', 'hub'];

/** Who a verified token speaks for. */
export interface Principal {
  name: string;
  role: Role;
  /** Token id. */
  jti: string;
}

const ISSUER = 'idprov-admin';
const SETTING_KEY = 'admin.signing-key';

/** True when `have` may do what `need` allows. */
export function roleAllows(have: Role, need: Role): boolean {
  return have === 'admin' || have === need;
}

export class AdminAuth {
  private constructor(
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
    return new AdminAuth(priv, createPublicKey(priv));
  }

  /** Mint a bearer token. `ttlS` 0 or absent = no expiry. */
  async mint(p: { name: string; role: Role; ttlS?: number }, now: number): Promise<string> {
    if (!ROLES.includes(p.role)) throw new ProvError('malformed', `role must be one of ${ROLES.join(', ')}`);
    const jwt = new SignJWT({ role: p.role })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' })
      .setIssuer(ISSUER)
      .setSubject(p.name)
      .setIssuedAt(now)
      .setJti(randomBytes(12).toString('base64url'));
    if (p.ttlS) jwt.setExpirationTime(now + p.ttlS);
    return jwt.sign(this.privateKey);
  }

  /** Verify a bearer token. @throws ProvError `unauthenticated`. */
  async verify(token: string, now: number): Promise<Principal> {
    try {
      const { payload } = await jwtVerify(token, this.publicKey, {
        issuer: ISSUER,
        algorithms: ['EdDSA'],
        currentDate: new Date(now * 1000),
      });
      const role = payload['role'];
      if (typeof payload.sub !== 'string' || (role !== 'admin' && role !== 'hub')) throw new ProvError('unauthenticated', 'token lacks a subject or role');
      return { name: payload.sub, role, jti: payload.jti ?? '' };
    } catch (e) {
      if (e instanceof ProvError) throw e;
      if (e instanceof joseErrors.JWTExpired) throw new ProvError('unauthenticated', 'token expired');
      throw new ProvError('unauthenticated', 'invalid token');
    }
  }
}
