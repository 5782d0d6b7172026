/**
 * The server side of one DTLS 1.2 handshake, as data and pure steps: what a cookie-verified
 * ClientHello negotiates (RFC 6347 §4.1, RFC 5246 §7.4.1, RFC 5746 §3.6, RFC 7627, RFC 9146), the
 * messages of flight 4 (ServerHello, [Certificate, ServerKeyExchange], ServerHelloDone; RFC 8422
 * §5.4), and the keys and Finished values (RFC 5246 §7.4.9, §8.1). The state machine that sequences
 * them is `connection.ts`.
 */
import { createECDH, createHash, sign, type ECDH, type Hash } from 'node:crypto';
import type { ServerCertificate } from './cert.ts';
import { RecordCipher, finishedData, keyBlock, masterSecret, safeEqual } from './crypto.ts';
import type { FlightMsg } from './record-layer.ts';
import { HandshakeReassembly } from './reassembly.ts';
import { chooseSuite, type DtlsSuite, type SuiteCapabilities } from './suites.ts';
import {
  ALERT,
  DTLS12,
  EXT,
  GROUP_P256,
  HT,
  SCSV_RENEGOTIATION,
  SIG_ECDSA_SHA256,
  extension,
  handshakeMessage,
  parseVec8Exact,
  u16,
  vec16,
  vec8,
  type ClientHello,
} from './wire.ts';

/** A handshake in progress. */
export interface Handshake {
  suite: DtlsSuite;
  clientRandom: Buffer;
  serverRandom: Buffer;
  /** Extended master secret (RFC 7627) negotiated. */
  ems: boolean;
  transcript: Hash;
  /** The client's messages, reassembled in order. */
  incoming: HandshakeReassembly;
  nextSendSeq: number;
  phase: 'wait_cke' | 'wait_finished';
  /** Flight 4, kept for retransmission. */
  flight: FlightMsg[];
  timer: NodeJS.Timeout | undefined;
  timeoutMs: number;
  startedAt: number;
  ecdh: ECDH | undefined;
  master: Buffer | undefined;
  /** The server's write cipher, switched on with the server's Finished. */
  pendingWrite: RecordCipher | undefined;
  pskIdentity: string | undefined;
  /** SHA-256 of the PSK of a known identity: the session keeps it to tell whether its key is still the device's. */
  pskDigest: Buffer | undefined;
}

/** What a ClientHello negotiates. */
export interface Negotiated {
  suite: DtlsSuite;
  ems: boolean;
  /** RFC 5746: the client signalled secure renegotiation (we answer with an empty renegotiation_info). */
  secureRenegotiation: boolean;
  /** RFC 9146: the client's CID (records to it carry it), when it offered connection_id and we use CIDs. */
  cidOut: Buffer | undefined;
}

/** Why a ClientHello is refused: the fatal alert and a reason for the debug log. */
export interface Refusal {
  alert: number;
  why: string;
}

/** What negotiation needs from the server's configuration. */
export interface HandshakePolicy extends SuiteCapabilities {
  readonly cidLength: number;
  readonly requireExtendedMasterSecret: boolean;
}

/** Check a cookie-verified ClientHello and pick what this association uses. */
export function negotiate(ch: ClientHello, policy: HandshakePolicy): Negotiated | Refusal {
  // RFC 6347 §4.1: client_version is the highest it supports; 0xfefd (1.2) or newer (lower).
  if (ch.version > DTLS12) return { alert: ALERT.protocolVersion, why: 'client offers no DTLS 1.2' };
  if (!ch.compressions.includes(0)) return { alert: ALERT.illegalParameter, why: 'no null compression' };
  // RFC 5746 §3.6: an initial ClientHello's renegotiation_info must be empty.
  const reneg = ch.extensions.get(EXT.renegotiationInfo);
  if (reneg !== undefined) {
    const v = parseVec8Exact(reneg);
    if (v === undefined || v.length !== 0) return { alert: ALERT.handshakeFailure, why: 'non-empty renegotiation_info' };
  }
  const secureRenegotiation = reneg !== undefined || ch.suites.includes(SCSV_RENEGOTIATION);
  const emsExt = ch.extensions.get(EXT.extendedMasterSecret);
  if (emsExt !== undefined && emsExt.length !== 0) return { alert: ALERT.decodeError, why: 'bad extended_master_secret' };
  const ems = emsExt !== undefined;
  if (!ems && policy.requireExtendedMasterSecret) return { alert: ALERT.handshakeFailure, why: 'extended master secret required' };
  const suite = chooseSuite(ch, policy);
  if (suite === undefined) return { alert: ALERT.handshakeFailure, why: 'no shared cipher suite' };
  let cidOut: Buffer | undefined;
  const cidRaw = ch.extensions.get(EXT.connectionId);
  if (cidRaw !== undefined && policy.cidLength > 0) {
    cidOut = parseVec8Exact(cidRaw);
    if (cidOut === undefined) return { alert: ALERT.decodeError, why: 'bad connection_id' };
  }
  return { suite, ems, secureRenegotiation, cidOut };
}

/** The ServerHello body: version, random, empty session id, suite, null compression, extensions. */
export function serverHello(n: Negotiated, ch: ClientHello, serverRandom: Buffer, cidIn: Buffer | undefined): Buffer {
  const exts: Buffer[] = [];
  if (n.secureRenegotiation) exts.push(extension(EXT.renegotiationInfo, vec8(Buffer.alloc(0))));
  if (n.ems) exts.push(extension(EXT.extendedMasterSecret, Buffer.alloc(0)));
  if (n.suite.kx === 'ecdhe' && ch.extensions.has(EXT.ecPointFormats)) exts.push(extension(EXT.ecPointFormats, vec8(Buffer.from([0]))));
  if (cidIn !== undefined) exts.push(extension(EXT.connectionId, vec8(cidIn)));
  return Buffer.concat([u16(DTLS12), serverRandom, vec8(Buffer.alloc(0)), u16(n.suite.id), Buffer.from([0]), ...(exts.length ? [vec16(Buffer.concat(exts))] : [])]);
}

/** The Certificate body: a list of one DER certificate (RFC 5246 §7.4.2). */
export function certificateList(der: Buffer): Buffer {
  const list = Buffer.alloc(6 + der.length);
  list.writeUIntBE(der.length + 3, 0, 3);
  list.writeUIntBE(der.length, 3, 3);
  der.copy(list, 6);
  return list;
}

/** A fresh P-256 key share and the signed ServerKeyExchange body over it (RFC 8422 §5.4). */
export function serverKeyExchange(cert: ServerCertificate, clientRandom: Buffer, serverRandom: Buffer): { body: Buffer; ecdh: ECDH } {
  const ecdh = createECDH('prime256v1');
  const point = ecdh.generateKeys();
  const params = Buffer.concat([Buffer.from([3]), u16(GROUP_P256), vec8(point)]);
  const sig = sign('sha256', Buffer.concat([clientRandom, serverRandom, params]), cert.privateKey);
  return { body: Buffer.concat([params, u16(SIG_ECDSA_SHA256), vec16(sig)]), ecdh };
}

/** A new handshake from the ClientHello `raw` (hashed into the transcript) with message_seq `msgSeq`. */
export function newHandshake(
  n: Negotiated,
  ch: ClientHello,
  raw: Buffer,
  msgSeq: number,
  serverRandom: Buffer,
  timing: { timeoutMs: number; now: number; maxHandshakeMessage: number },
): Handshake {
  return {
    suite: n.suite,
    clientRandom: ch.random,
    serverRandom,
    ems: n.ems,
    transcript: createHash('sha256').update(raw),
    incoming: new HandshakeReassembly(msgSeq + 1, 4 * timing.maxHandshakeMessage),
    nextSendSeq: msgSeq,
    phase: 'wait_cke',
    flight: [],
    timer: undefined,
    timeoutMs: timing.timeoutMs,
    startedAt: timing.now,
    ecdh: undefined,
    master: undefined,
    pendingWrite: undefined,
    pskIdentity: undefined,
    pskDigest: undefined,
  };
}

/** Append a server handshake message to the flight being built, and to the transcript. */
export function addToFlight(hs: Handshake, type: number, body: Buffer, epoch: 0 | 1 = 0): void {
  const seq = hs.nextSendSeq++;
  hs.transcript.update(handshakeMessage(type, seq, body));
  hs.flight.push({ ccs: false, epoch, type, seq, body });
}

/**
 * From the pre-master secret: the master secret (with the session hash under RFC 7627), the read
 * cipher (returned, it takes effect at once) and the pending write cipher. The pre-master is wiped.
 */
export function deriveKeys(hs: Handshake, preMaster: Buffer): RecordCipher {
  const sessionHash = hs.ems ? hs.transcript.copy().digest() : undefined;
  hs.master = masterSecret(preMaster, hs.clientRandom, hs.serverRandom, sessionHash);
  preMaster.fill(0);
  const kb = keyBlock(hs.master, hs.clientRandom, hs.serverRandom);
  hs.pendingWrite = new RecordCipher(hs.suite.aead, kb.serverKey, kb.serverIv);
  hs.phase = 'wait_finished';
  return new RecordCipher(hs.suite.aead, kb.clientKey, kb.clientIv);
}

/**
 * Check the client's Finished (RFC 5246 §7.4.9) and build the server's flight 6 (ChangeCipherSpec,
 * Finished), or the refusal when it does not verify. The master secret is wiped once the server's
 * Finished is computed.
 */
export function clientFinished(hs: Handshake, msgSeq: number, body: Buffer): FlightMsg[] | Refusal {
  if (body.length !== 12) return { alert: ALERT.decodeError, why: 'bad Finished length' };
  const expected = finishedData(hs.master!, 'client finished', hs.transcript.copy().digest());
  if (!safeEqual(expected, body)) return { alert: ALERT.decryptError, why: 'client Finished did not verify' };
  hs.transcript.update(handshakeMessage(HT.finished, msgSeq, body));
  const verify = finishedData(hs.master!, 'server finished', hs.transcript.digest());
  hs.master!.fill(0);
  const seq = hs.nextSendSeq++;
  return [{ ccs: true }, { ccs: false, epoch: 1, type: HT.finished, seq, body: verify }];
}
