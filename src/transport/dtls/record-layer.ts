/**
 * The record layer of one DTLS 1.2 association (RFC 6347 §4.1, RFC 9146): the write side (epoch 0
 * and 1 sequence numbers, AEAD protection, CID records, flights packed into datagrams of at most the
 * MTU with handshake messages fragmented to fit, RFC 6347 §4.2.3) and the read side (the replay
 * window of each epoch, opening protected records).
 */
import { RecordCipher, ReplayWindow, innerPlaintext, splitInnerPlaintext } from './crypto.ts';
import { CT, DTLS12, HS_HEADER, RECORD_HEADER, handshakeFragment, writeCidRecord, writeRecord, type RecordView } from './wire.ts';

/** One message of a flight: a handshake message at its epoch, or ChangeCipherSpec. */
export type FlightMsg = { ccs: true } | { ccs: false; epoch: 0 | 1; type: number; seq: number; body: Buffer };

const CCS_BODY = Buffer.from([1]);
const EMPTY = Buffer.alloc(0);

/** The write side: records at epoch 0 (plaintext) and epoch 1 (protected, CID records when negotiated). */
export class RecordWriter {
  /** The next epoch-0 record sequence number (it continues the ClientHello's, RFC 6347 §4.2.1). */
  seq0 = 0;
  /** The next epoch-1 record sequence number. */
  seq1 = 0;
  /** The epoch-1 write cipher, once the server's Finished is due. */
  cipher: RecordCipher | undefined;
  /** The client's CID (records to it carry it); empty or undefined → plain records. */
  cidOut: Buffer | undefined;

  /** Bytes a record at `epoch` adds to its payload. */
  overhead(epoch: number): number {
    if (epoch === 0 || this.cipher === undefined) return RECORD_HEADER;
    const cid = this.cidOut !== undefined && this.cidOut.length > 0 ? this.cidOut.length + 1 : 0;
    return RECORD_HEADER + cid + this.cipher.overhead;
  }

  /** One record at the given write epoch (epoch 1 needs the write cipher). */
  encode(type: number, epoch: number, payload: Buffer): Buffer {
    if (epoch === 0) return writeRecord(type, DTLS12, 0, this.seq0++, payload);
    const c = this.cipher!;
    const seq = this.seq1++;
    if (this.cidOut !== undefined && this.cidOut.length > 0) {
      const cid = this.cidOut;
      return writeCidRecord(DTLS12, 1, seq, cid, c.seal(CT.tls12Cid, DTLS12, 1, seq, cid, innerPlaintext(type, payload)));
    }
    return writeRecord(type, DTLS12, 1, seq, c.seal(type, DTLS12, 1, seq, undefined, payload));
  }

  /** The datagrams of a flight: its records packed up to `mtu` bytes each, handshake messages fragmented to fit. */
  packFlight(msgs: readonly FlightMsg[], mtu: number): Buffer[] {
    const out: Buffer[] = [];
    let cur: Buffer[] = [];
    let curLen = 0;
    const flush = (): void => {
      if (cur.length) out.push(cur.length === 1 ? cur[0]! : Buffer.concat(cur));
      cur = [];
      curLen = 0;
    };
    const push = (rec: Buffer): void => {
      if (curLen + rec.length > mtu && cur.length) flush();
      cur.push(rec);
      curLen += rec.length;
    };
    for (const m of msgs) {
      if (m.ccs) {
        push(this.encode(CT.ccs, 0, CCS_BODY));
        continue;
      }
      // RFC 6347 §4.2.3: fragment handshake messages to fit the PMTU.
      const overhead = this.overhead(m.epoch) + HS_HEADER;
      let off = 0;
      do {
        let room = mtu - curLen - overhead;
        if (room < 64 && cur.length) {
          flush();
          room = mtu - overhead;
        }
        const n = Math.min(m.body.length - off, Math.max(room, 16));
        push(this.encode(CT.handshake, m.epoch, handshakeFragment(m.type, m.seq, m.body, off, n)));
        off += n;
      } while (off < m.body.length);
    }
    flush();
    return out;
  }
}

/** {@link RecordReader.openEncrypted}: not a record for this association's epoch 1 (or a replay); drop it. */
export const RECORD_IGNORED = 0;
/** {@link RecordReader.openEncrypted}: it did not authenticate (a wrong key or a forgery). */
export const RECORD_FORGED = 1;
/** {@link RecordReader.openEncrypted}: authenticated; `type`, `content` and `newer` say what it holds. */
export const RECORD_OPENED = 2;

/** The read side: the replay window of each epoch and the epoch-1 read cipher. */
export class RecordReader {
  /** The epoch-0 replay window (plaintext records: they are only checked, never authenticated). */
  readonly plainWindow = new ReplayWindow();
  private readonly protectedWindow = new ReplayWindow();
  /** The epoch-1 read cipher, once the keys are derived. */
  cipher: RecordCipher | undefined;
  /** Of the last record opened: its real content type (inside a CID record), its content, and
   * whether it advanced the epoch-1 window (RFC 9146 §6: only a newer record may move the peer). */
  type = 0;
  content: Buffer = EMPTY;
  newer = false;

  /** Open an epoch-1 record (`cidIn`: our CID, which tls12_cid records must carry). */
  openEncrypted(r: RecordView, cidIn: Buffer | undefined): number {
    if (r.epoch !== 1 || this.cipher === undefined) return RECORD_IGNORED;
    if (r.type === CT.tls12Cid) {
      if (cidIn === undefined || r.cid === undefined || !r.cid.equals(cidIn)) return RECORD_IGNORED;
    } else if (r.type !== CT.handshake && r.type !== CT.appData && r.type !== CT.alert && r.type !== CT.ccs) return RECORD_IGNORED;
    if (!this.protectedWindow.check(r.seq)) return RECORD_IGNORED;
    const plain = this.cipher.open(r.type, r.version, r.epoch, r.seq, r.cid, r.fragment);
    if (plain === undefined) return RECORD_FORGED;
    if (r.type === CT.tls12Cid) {
      const inner = splitInnerPlaintext(plain);
      if (inner === undefined) return RECORD_IGNORED;
      this.type = inner.type;
      this.content = inner.content;
    } else {
      this.type = r.type;
      this.content = plain;
    }
    this.newer = this.protectedWindow.update(r.seq);
    return RECORD_OPENED;
  }
}
