/**
 * The cipher suites this server implements and the choice of one for a ClientHello.
 */
import { EXT, GROUP_P256, SIG_ECDSA_SHA256, parseU16List, parseVec8Exact, type ClientHello } from './wire.ts';
import type { AeadKind } from './crypto.ts';
import type { ServerCertificate } from './cert.ts';

/** A cipher suite this server implements. */
export interface DtlsSuite {
  id: number;
  name: string;
  kx: 'psk' | 'ecdhe';
  aead: AeadKind;
}

/** The four suites of docs/spec/idprov-coap-v1.md §6 (RFC 7925 §4.2, §4.4; RFC 6655; RFC 7251; RFC 5487; RFC 5289). */
export const SUITES: ReadonlyMap<number, DtlsSuite> = new Map([
  [0xc0a8, { id: 0xc0a8, name: 'TLS_PSK_WITH_AES_128_CCM_8', kx: 'psk', aead: 'ccm8' }],
  [0x00a8, { id: 0x00a8, name: 'TLS_PSK_WITH_AES_128_GCM_SHA256', kx: 'psk', aead: 'gcm' }],
  [0xc0ae, { id: 0xc0ae, name: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8', kx: 'ecdhe', aead: 'ccm8' }],
  [0xc02b, { id: 0xc02b, name: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', kx: 'ecdhe', aead: 'gcm' }],
]);

/** What the server can do, for {@link chooseSuite}. */
export interface SuiteCapabilities {
  readonly certificate: ServerCertificate | undefined;
  readonly pskLookup: unknown;
  readonly suites: readonly number[];
}

/**
 * The suite for a ClientHello: the first of the server's preference list that the client offers and
 * the server can do (a certificate for ECDHE, with P-256, uncompressed points and ecdsa_secp256r1_sha256
 * allowed by the client's extensions; a PSK lookup for PSK). Undefined when none fits.
 */
export function chooseSuite(ch: ClientHello, host: SuiteCapabilities): DtlsSuite | undefined {
  let ecdheOk = host.certificate !== undefined;
  if (ecdheOk) {
    // RFC 8422 §5.1: absent extensions mean "anything"; present ones must allow P-256/uncompressed.
    const groups = ch.extensions.get(EXT.supportedGroups);
    if (groups !== undefined && !(parseU16List(groups) ?? []).includes(GROUP_P256)) ecdheOk = false;
    const pf = ch.extensions.get(EXT.ecPointFormats);
    if (pf !== undefined && !(parseVec8Exact(pf) ?? Buffer.alloc(0)).includes(0)) ecdheOk = false;
    // RFC 5246 §7.4.1.4.1: with signature_algorithms, ours must be listed.
    const sa = ch.extensions.get(EXT.signatureAlgorithms);
    if (sa !== undefined && !(parseU16List(sa) ?? []).includes(SIG_ECDSA_SHA256)) ecdheOk = false;
  }
  const pskOk = host.pskLookup !== undefined;
  for (const id of host.suites) {
    const s = SUITES.get(id);
    if (s === undefined || !ch.suites.includes(id)) continue;
    if ((s.kx === 'psk' && pskOk) || (s.kx === 'ecdhe' && ecdheOk)) return s;
  }
  return undefined;
}

