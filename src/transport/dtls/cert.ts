/**
 * The server's ECDSA P-256 identity for the ECDHE_ECDSA suites (docs/spec/idprov-coap-v1.md §6): a self-signed X.509
 * v3 certificate made with `node:crypto` and a small DER writer (RFC 5280 §4.1), created at first
 * start in the data directory or loaded from configured paths; and its fingerprint, the base64url
 * SHA-256 of the SubjectPublicKeyInfo (the `fp` of docs/spec/idprov-coap-v1.md §7).
 */
import { X509Certificate, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';

/** A loaded server certificate. */
export interface ServerCertificate {
  /** DER of the certificate, sent in the Certificate message. */
  der: Buffer;
  privateKey: KeyObject;
  /** base64url SHA-256 of the DER SubjectPublicKeyInfo. */
  fingerprint: string;
}

/** A DER tag-length-value (lengths up to 65535). */
function derTlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, content]);
}
const derSequence = (...xs: Buffer[]): Buffer => derTlv(0x30, Buffer.concat(xs));
const ECDSA_SHA256 = derSequence(Buffer.from('06082a8648ce3d040302', 'hex'));

/** An X.509 validity time (RFC 5280 §4.1.2.5). */
function derTime(ms: number): Buffer {
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '');
  const year = Number(iso.slice(0, 4));
  // RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
  return year < 2050 ? derTlv(0x17, Buffer.from(digits.slice(2) + 'Z', 'latin1')) : derTlv(0x18, Buffer.from(digits + 'Z', 'latin1'));
}

/** An X.501 Name with one commonName. */
function derCommonName(cn: string): Buffer {
  return derSequence(derTlv(0x31, derSequence(Buffer.from('0603550403', 'hex'), derTlv(0x0c, Buffer.from(cn, 'utf8')))));
}

/** SHA-256 of the DER SubjectPublicKeyInfo, base64url. */
export function spkiFingerprint(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256').update(pub.export({ type: 'spki', format: 'der' })).digest('base64url');
}

/**
 * A self-signed certificate for `privateKey` (P-256): v3, random positive serial, ecdsa-with-SHA256,
 * subject = issuer = CN=`cn`, valid from a day before `nowMs` to 9999-12-31 (RFC 5280 §4.1.2.5:
 * no well-defined expiration), no extensions.
 */
export function selfSignedCertificate(privateKey: KeyObject, cn: string, nowMs: number): Buffer {
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  const tbs = derSequence(
    derTlv(0xa0, derTlv(0x02, Buffer.from([2]))),
    derTlv(0x02, serial),
    ECDSA_SHA256,
    derCommonName(cn),
    derSequence(derTime(nowMs - 86_400_000), derTlv(0x18, Buffer.from('99991231235959Z', 'latin1'))),
    derCommonName(cn),
    spki,
  );
  const sig = sign('sha256', tbs, privateKey);
  return derSequence(tbs, ECDSA_SHA256, derTlv(0x03, Buffer.concat([Buffer.from([0]), sig])));
}

function toPem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

/** Check that `der` is a certificate for a P-256 key matching `privateKey`. @throws Error */
function assertKeyMatchesCertificate(der: Buffer, privateKey: KeyObject): void {
  const cert = new X509Certificate(der);
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('the DTLS key must be an EC P-256 (prime256v1) private key');
  }
  if (!cert.checkPrivateKey(privateKey)) throw new Error('the DTLS certificate does not match its private key');
}

/**
 * Load the certificate and key from `certPath`/`keyPath` (PEM); when neither file exists and
 * `create` is true, make a key pair and a self-signed certificate and write them (key mode 0600).
 * @throws Error when the files are unreadable, not P-256, or do not match.
 */
export function loadOrCreateCertificate(opts: { certPath: string; keyPath: string; create: boolean; nowMs: number; cn?: string }): ServerCertificate & { created: boolean } {
  const haveCert = existsSync(opts.certPath);
  const haveKey = existsSync(opts.keyPath);
  let created = false;
  if (!haveCert && !haveKey && opts.create) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const der = selfSignedCertificate(privateKey, opts.cn ?? 'idprov', opts.nowMs);
    writeFileSync(opts.keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    chmodSync(opts.keyPath, 0o600);
    writeFileSync(opts.certPath, toPem('CERTIFICATE', der), { mode: 0o644 });
    created = true;
  }
  const privateKey = createPrivateKey(readFileSync(opts.keyPath));
  const cert = new X509Certificate(readFileSync(opts.certPath));
  assertKeyMatchesCertificate(cert.raw, privateKey);
  return { der: cert.raw, privateKey, fingerprint: spkiFingerprint(privateKey), created };
}
