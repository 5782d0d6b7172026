/**
 * The device's long-term secrets, kept across runs the way firmware keeps them in flash:
 *
 * - an Ed25519 key (its 32-byte seed): the identity. Its public key is Body key 2 (docs/spec/idprov-coap-v1.md §2)
 *   and the `cnf` key of every token (§5); the admin approves exactly this key (§5 rule 3), so it
 *   must not change between runs;
 * - an X25519 secret key: the `xk` of sealed requests (§5 "Sealing").
 *
 * Key file: JSON `{"seed": hex, "x25519Secret": hex}`, mode 0600, created when missing. The last
 * token is stored next to it in `<key file>.token` (the raw CWT bytes, mode 0600).
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import nacl from 'tweetnacl';
import { privateKeyFromSeed, rawPublicKey } from '../../src/tokens/ed25519.ts';
import { DeviceSimError } from './errors.ts';

/** The device's secrets. */
export interface DeviceSecrets {
  /** Ed25519 private key as its 32-byte seed (RFC 8032). */
  seed: Uint8Array;
  /** X25519 secret key (32 bytes) for sealed tokens. */
  x25519Secret: Uint8Array;
}

/** The secrets with the public values derived from them. */
export interface DeviceKeys extends DeviceSecrets {
  /** Ed25519 signing key. */
  privateKey: KeyObject;
  /** Raw 32-byte Ed25519 public key: Body key 2 (§2), the token's `cnf` (§5). */
  publicKey: Buffer;
  /** X25519 public key: Body key 6 `xk` (§2, §5). */
  x25519Public: Uint8Array;
}

/** A key file as loaded. */
export interface LoadedKeyFile {
  keys: DeviceKeys;
  /** True when this call created the file. */
  created: boolean;
  /** Problems worth telling the user about (e.g. the file is readable by others). */
  warnings: string[];
}

/** Derive the public values from the secrets. */
export function deviceKeys(s: DeviceSecrets): DeviceKeys {
  if (s.seed.length !== 32) throw new DeviceSimError('key-file', 'the Ed25519 seed must be 32 bytes');
  if (s.x25519Secret.length !== 32) throw new DeviceSimError('key-file', 'the X25519 secret key must be 32 bytes');
  const privateKey = privateKeyFromSeed(s.seed);
  return {
    seed: s.seed,
    x25519Secret: s.x25519Secret,
    privateKey,
    publicKey: rawPublicKey(privateKey),
    x25519Public: nacl.box.keyPair.fromSecretKey(s.x25519Secret).publicKey,
  };
}

/** Fresh random secrets. */
export function generateSecrets(): DeviceSecrets {
  return { seed: randomBytes(32), x25519Secret: nacl.box.keyPair().secretKey };
}

function hex32(v: unknown, field: string, file: string): Buffer {
  if (typeof v !== 'string' || !/^[0-9a-fA-F]{64}$/.test(v)) {
    throw new DeviceSimError('key-file', `${file}: "${field}" must be 64 hex digits`);
  }
  return Buffer.from(v, 'hex');
}

/** Read an existing key file. @throws DeviceSimError `key-file`. */
export function readKeyFile(file: string): LoadedKeyFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new DeviceSimError('key-file', `cannot read key file ${file}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new DeviceSimError('key-file', `${file} is not JSON: ${(e as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new DeviceSimError('key-file', `${file} must hold a JSON object`);
  const o = json as Record<string, unknown>;
  const keys = deviceKeys({ seed: hex32(o.seed, 'seed', file), x25519Secret: hex32(o.x25519Secret, 'x25519Secret', file) });
  const warnings: string[] = [];
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077) warnings.push(`${file} is readable by other users (mode ${mode.toString(8).padStart(4, '0')}); chmod 600 it`);
  return { keys, created: false, warnings };
}

/** Write `data` to a new file with mode 0600; fails if the file exists. */
function createPrivateFile(file: string, data: string | Uint8Array): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const fd = openSync(file, 'wx', 0o600);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  } finally {
    closeSync(fd);
  }
  chmodSync(file, 0o600); // in case the umask was unusual
}

/** Create a key file with fresh secrets. @throws DeviceSimError `key-file` if it exists. */
export function createKeyFile(file: string, secrets: DeviceSecrets = generateSecrets()): LoadedKeyFile {
  const keys = deviceKeys(secrets);
  const json = JSON.stringify({ seed: Buffer.from(keys.seed).toString('hex'), x25519Secret: Buffer.from(keys.x25519Secret).toString('hex') }, null, 2) + '\n';
  try {
    createPrivateFile(file, json);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DeviceSimError('key-file', code === 'EEXIST' ? `key file ${file} already exists` : `cannot create key file ${file}: ${(e as Error).message}`);
  }
  return { keys, created: true, warnings: [] };
}

/** Load the key file, creating it (mode 0600) with fresh secrets when it does not exist. */
export function loadOrCreateKeyFile(file: string): LoadedKeyFile {
  if (existsSync(file)) return readKeyFile(file);
  try {
    return createKeyFile(file);
  } catch (e) {
    // Another process created it between the check and the create: use theirs.
    if (e instanceof DeviceSimError && existsSync(file)) return readKeyFile(file);
    throw e;
  }
}

/** Where the token of a key file is kept. */
export function tokenFileOf(keyFile: string): string {
  return `${keyFile}.token`;
}

/** The stored token, or undefined when there is none. */
export function loadToken(keyFile: string): Buffer | undefined {
  const f = tokenFileOf(keyFile);
  if (!existsSync(f)) return undefined;
  const b = readFileSync(f);
  return b.length ? b : undefined;
}

/** Store the token (replacing the previous one atomically), mode 0600. */
export function saveToken(keyFile: string, token: Uint8Array): void {
  const f = tokenFileOf(keyFile);
  const tmp = `${f}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  createPrivateFile(tmp, token);
  renameSync(tmp, f);
}
