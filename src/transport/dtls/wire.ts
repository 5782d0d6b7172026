/**
 * DTLS 1.2 wire formats (RFC 6347 §4.1, §4.2.2; RFC 5246 §7.4; RFC 9146 §4): constants, bounded
 * parsers and writers. Every parser takes bytes from the network and returns a typed value or
 * `undefined` (never throws): the transport drops what it cannot read (RFC 6347 §4.1.2.7).
 */

/** Record content types (RFC 5246 §6.2.1, RFC 9146 §4: tls12_cid = 25). */
export const CT = { ccs: 20, alert: 21, handshake: 22, appData: 23, tls12Cid: 25 } as const;

/** Handshake message types (RFC 5246 §7.4, RFC 6347 §4.3.2). */
export const HT = {
  helloRequest: 0,
  clientHello: 1,
  serverHello: 2,
  helloVerifyRequest: 3,
  certificate: 11,
  serverKeyExchange: 12,
  certificateRequest: 13,
  serverHelloDone: 14,
  certificateVerify: 15,
  clientKeyExchange: 16,
  finished: 20,
} as const;

/** Protocol versions on the wire (one's complement of TLS's). */
export const DTLS12 = 0xfefd;
export const DTLS10 = 0xfeff;

/** Extension code points. connection_id is RFC 9146's final 54 (drafts used 53 and 254). */
export const EXT = {
  serverName: 0,
  supportedGroups: 10,
  ecPointFormats: 11,
  signatureAlgorithms: 13,
  encryptThenMac: 22,
  extendedMasterSecret: 23,
  connectionId: 54,
  renegotiationInfo: 0xff01,
} as const;

/** TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3). */
export const SCSV_RENEGOTIATION = 0x00ff;
/** secp256r1 (RFC 8422 §5.1.1) and ecdsa_secp256r1_sha256 (RFC 5246 §7.4.1.4.1 sha256=4, ecdsa=3). */
export const GROUP_P256 = 23;
export const SIG_ECDSA_SHA256 = 0x0403;

/** Alert levels and descriptions (RFC 5246 §7.2, RFC 4279 §2, RFC 5746). */
export const ALERT = {
  warning: 1,
  fatal: 2,
  closeNotify: 0,
  unexpectedMessage: 10,
  badRecordMac: 20,
  handshakeFailure: 40,
  illegalParameter: 47,
  decodeError: 50,
  decryptError: 51,
  protocolVersion: 70,
  insufficientSecurity: 71,
  internalError: 80,
  noRenegotiation: 100,
  unsupportedExtension: 110,
  unknownPskIdentity: 115,
} as const;

/** Length of the plain record header (RFC 6347 §4.1). */
export const RECORD_HEADER = 13;
/** Length of the handshake header (RFC 6347 §4.2.2). */
export const HS_HEADER = 12;
/** Largest record payload accepted: 2^14 plaintext + 2048 expansion (RFC 5246 §6.2.3). */
export const MAX_RECORD_PAYLOAD = 16384 + 2048;

/** One record as read from a datagram; `header` is the exact header bytes (for CID records too). */
export interface RecordView {
  type: number;
  version: number;
  epoch: number;
  /** 48-bit sequence number (exact as a JS number). */
  seq: number;
  /** The CID carried in a tls12_cid record, else undefined. */
  cid: Buffer | undefined;
  fragment: Buffer;
}

/**
 * Split a datagram into records. `cidLength` is the (fixed) length of the CIDs this endpoint hands
 * out, needed to read tls12_cid headers (RFC 9146 §4: the receiver knows the length). Stops at the
 * first malformed record: what was read before it is returned, the rest of the datagram is dropped.
 */
export function parseRecords(buf: Buffer, cidLength: number, max = 32): RecordView[] {
  const out: RecordView[] = [];
  let off = 0;
  while (off < buf.length && out.length < max) {
    const type = buf[off]!;
    const cidLen = type === CT.tls12Cid ? cidLength : 0;
    if (type === CT.tls12Cid && cidLength === 0) break;
    const hdr = RECORD_HEADER + cidLen;
    if (buf.length - off < hdr) break;
    const version = buf.readUInt16BE(off + 1);
    if (version !== DTLS12 && version !== DTLS10) break;
    const epoch = buf.readUInt16BE(off + 3);
    const seq = buf.readUIntBE(off + 5, 6);
    const cid = cidLen > 0 ? buf.subarray(off + 11, off + 11 + cidLen) : undefined;
    const len = buf.readUInt16BE(off + hdr - 2);
    if (len > MAX_RECORD_PAYLOAD || buf.length - off - hdr < len) break;
    if (type < CT.ccs || type > CT.tls12Cid || type === 24) break;
    out.push({ type, version, epoch, seq, cid, fragment: buf.subarray(off + hdr, off + hdr + len) });
    off += hdr + len;
  }
  return out;
}

/** Write a plain record header + payload. */
export function writeRecord(type: number, version: number, epoch: number, seq: number, payload: Buffer): Buffer {
  const b = Buffer.allocUnsafe(RECORD_HEADER + payload.length);
  b[0] = type;
  b.writeUInt16BE(version, 1);
  b.writeUInt16BE(epoch, 3);
  b.writeUIntBE(seq, 5, 6);
  b.writeUInt16BE(payload.length, 11);
  payload.copy(b, RECORD_HEADER);
  return b;
}

/**
 * A `tls12_cid` record (RFC 9146 §4): the header carries the connection ID between the sequence
 * number and the length; `enc` is the sealed inner plaintext.
 */
export function writeCidRecord(version: number, epoch: number, seq: number, cid: Buffer, enc: Buffer): Buffer {
  const b = Buffer.allocUnsafe(RECORD_HEADER + cid.length + enc.length);
  b[0] = CT.tls12Cid;
  b.writeUInt16BE(version, 1);
  b.writeUInt16BE(epoch, 3);
  b.writeUIntBE(seq, 5, 6);
  cid.copy(b, 11);
  b.writeUInt16BE(enc.length, 11 + cid.length);
  enc.copy(b, 13 + cid.length);
  return b;
}

/** One handshake fragment (RFC 6347 §4.2.2). */
export interface HandshakeFragment {
  msgType: number;
  length: number;
  msgSeq: number;
  fragOffset: number;
  fragLength: number;
  body: Buffer;
}

/**
 * Split a handshake record's payload into fragments. Returns undefined when any fragment is
 * malformed (lengths inconsistent or out of bounds); the whole record is then dropped.
 */
export function parseHandshakeFragments(payload: Buffer, maxMessage: number): HandshakeFragment[] | undefined {
  const out: HandshakeFragment[] = [];
  let off = 0;
  while (off < payload.length) {
    if (payload.length - off < HS_HEADER) return undefined;
    const msgType = payload[off]!;
    const length = payload.readUIntBE(off + 1, 3);
    const msgSeq = payload.readUInt16BE(off + 4);
    const fragOffset = payload.readUIntBE(off + 6, 3);
    const fragLength = payload.readUIntBE(off + 9, 3);
    if (length > maxMessage || fragOffset + fragLength > length) return undefined;
    if (payload.length - off - HS_HEADER < fragLength) return undefined;
    if (fragLength === 0 && length !== 0) return undefined;
    out.push({ msgType, length, msgSeq, fragOffset, fragLength, body: payload.subarray(off + HS_HEADER, off + HS_HEADER + fragLength) });
    off += HS_HEADER + fragLength;
    if (out.length > 64) return undefined;
  }
  return out;
}

/** The full (unfragmented) handshake message as hashed into the transcript (RFC 6347 §4.2.6). */
export function handshakeMessage(msgType: number, msgSeq: number, body: Buffer): Buffer {
  const b = Buffer.allocUnsafe(HS_HEADER + body.length);
  b[0] = msgType;
  b.writeUIntBE(body.length, 1, 3);
  b.writeUInt16BE(msgSeq, 4);
  b.writeUIntBE(0, 6, 3);
  b.writeUIntBE(body.length, 9, 3);
  body.copy(b, HS_HEADER);
  return b;
}

/** A handshake fragment header + fragment bytes. */
export function handshakeFragment(msgType: number, msgSeq: number, body: Buffer, offset: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(HS_HEADER + length);
  b[0] = msgType;
  b.writeUIntBE(body.length, 1, 3);
  b.writeUInt16BE(msgSeq, 4);
  b.writeUIntBE(offset, 6, 3);
  b.writeUIntBE(length, 9, 3);
  body.copy(b, HS_HEADER, offset, offset + length);
  return b;
}

/** A bounds-checked reader; `ok` turns false on the first over-read and stays false. */
export class Reader {
  ok = true;
  constructor(
    private readonly b: Buffer,
    public off = 0,
    private readonly end = b.length,
  ) {}
  get left(): number {
    return this.end - this.off;
  }
  u8(): number {
    if (this.left < 1) return this.fail(0);
    return this.b[this.off++]!;
  }
  u16(): number {
    if (this.left < 2) return this.fail(0);
    const v = this.b.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }
  bytes(n: number): Buffer {
    if (n < 0 || this.left < n) return this.fail(Buffer.alloc(0));
    const v = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  /** opaque<0..2^8-1> */
  vec8(): Buffer {
    return this.bytes(this.u8());
  }
  /** opaque<0..2^16-1> */
  vec16(): Buffer {
    return this.bytes(this.u16());
  }
  private fail<T>(v: T): T {
    this.ok = false;
    this.off = this.end;
    return v;
  }
}

/** A parsed ClientHello (RFC 6347 §4.2.1, RFC 5246 §7.4.1.2). */
export interface ClientHello {
  version: number;
  random: Buffer;
  sessionId: Buffer;
  cookie: Buffer;
  suites: number[];
  compressions: Buffer;
  /** Extensions by type; duplicates make the hello malformed (RFC 5246 §7.4.1.4). */
  extensions: Map<number, Buffer>;
  /** The bytes the cookie binds: version, random, session_id, cipher_suites, compression_methods. */
  cookieInput: Buffer[];
}

/** Parse a ClientHello body; undefined when malformed. */
export function parseClientHello(body: Buffer): ClientHello | undefined {
  const r = new Reader(body);
  const version = r.u16();
  const random = r.bytes(32);
  const sessionId = r.vec8();
  const head = body.subarray(0, r.off);
  const cookie = r.vec8();
  const suitesStart = r.off;
  const suitesRaw = r.vec16();
  const compressions = r.vec8();
  const tail = body.subarray(suitesStart, r.off);
  if (!r.ok || sessionId.length > 32 || suitesRaw.length < 2 || suitesRaw.length % 2 !== 0 || compressions.length < 1) return undefined;
  const suites: number[] = [];
  for (let i = 0; i < suitesRaw.length; i += 2) suites.push(suitesRaw.readUInt16BE(i));
  const extensions = new Map<number, Buffer>();
  if (r.left > 0) {
    const ext = r.vec16();
    if (!r.ok || r.left !== 0) return undefined;
    const er = new Reader(ext);
    while (er.left > 0) {
      const type = er.u16();
      const data = er.vec16();
      if (!er.ok || extensions.has(type)) return undefined;
      extensions.set(type, data);
    }
  }
  return { version, random, sessionId, cookie, suites, compressions, extensions, cookieInput: [head, tail] };
}

/** Parse a list of u16 values in an opaque<2..2^16-1> (supported_groups, signature_algorithms). */
export function parseU16List(data: Buffer): number[] | undefined {
  const r = new Reader(data);
  const v = r.vec16();
  if (!r.ok || r.left !== 0 || v.length % 2 !== 0) return undefined;
  const out: number[] = [];
  for (let i = 0; i < v.length; i += 2) out.push(v.readUInt16BE(i));
  return out;
}

/** Parse an opaque<0..2^8-1> that fills the whole extension (ec_point_formats, connection_id, renegotiation_info). */
export function parseVec8Exact(data: Buffer): Buffer | undefined {
  const r = new Reader(data);
  const v = r.vec8();
  return r.ok && r.left === 0 ? v : undefined;
}

/** Parse a ClientKeyExchange body: PSK identity (RFC 4279 §2) or an ECDHE point (RFC 8422 §5.7). */
export function parseClientKeyExchange(body: Buffer, kx: 'psk' | 'ecdhe'): Buffer | undefined {
  const r = new Reader(body);
  const v = kx === 'psk' ? r.vec16() : r.vec8();
  if (!r.ok || r.left !== 0) return undefined;
  if (kx === 'ecdhe' && (v.length !== 65 || v[0] !== 4)) return undefined;
  if (kx === 'psk' && v.length > 128) return undefined;
  return v;
}

/** Parse an alert; undefined unless exactly two bytes with a known level. */
export function parseAlert(payload: Buffer): { level: number; description: number } | undefined {
  if (payload.length !== 2) return undefined;
  const level = payload[0]!;
  if (level !== ALERT.warning && level !== ALERT.fatal) return undefined;
  return { level, description: payload[1]! };
}

/** Concatenate u8/u16-prefixed vectors. */
export function vec8(b: Buffer): Buffer {
  return Buffer.concat([Buffer.from([b.length]), b]);
}
export function vec16(b: Buffer): Buffer {
  const h = Buffer.allocUnsafe(2);
  h.writeUInt16BE(b.length);
  return Buffer.concat([h, b]);
}
export function u16(n: number): Buffer {
  const h = Buffer.allocUnsafe(2);
  h.writeUInt16BE(n);
  return h;
}
/** One extension: type, opaque extension_data<0..2^16-1>. */
export function extension(type: number, data: Buffer): Buffer {
  return Buffer.concat([u16(type), vec16(data)]);
}
