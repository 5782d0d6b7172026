/**
 * Reassembly of the client's handshake messages from their fragments (RFC 6347 §4.2.3), in message
 * sequence order. Bounded: messages at most a few ahead of the next expected one, bytes held at most
 * four times the largest message, and at most 128 separate ranges per message.
 */

/** One message being reassembled (or complete, waiting for its turn). */
export interface HandshakeMessageBuffer {
  type: number;
  /** The epoch its fragments came in; all must agree (a Finished must come protected). */
  epoch: number;
  /** Its message_seq. */
  seq: number;
  buf: Buffer;
  /** Merged received ranges [start, end), sorted. */
  ranges: number[];
}

/** {@link HandshakeReassembly.add}: the fragment belongs to a message already processed. */
export const FRAGMENT_OF_OLD_MESSAGE = 0;
/** {@link HandshakeReassembly.add}: the fragment was ignored (too far ahead, inconsistent, over a bound). */
export const FRAGMENT_IGNORED = 1;
/** {@link HandshakeReassembly.add}: the fragment was kept; messages may now be complete. */
export const FRAGMENT_KEPT = 2;

const MAX_FUTURE_MESSAGES = 4;
const MAX_RANGES = 128;

export class HandshakeReassembly {
  /** The message_seq of the next message to process. */
  nextSeq: number;
  private readonly messages = new Map<number, HandshakeMessageBuffer>();
  private bytes = 0;

  constructor(
    firstSeq: number,
    /** Bytes held at most (four times the largest handshake message). */
    private readonly maxBytes: number,
  ) {
    this.nextSeq = firstSeq;
  }

  /** Add one fragment of message `seq` (`length` bytes in all) at offset `off`. */
  add(epoch: number, type: number, length: number, seq: number, off: number, body: Buffer): number {
    if (seq < this.nextSeq) return FRAGMENT_OF_OLD_MESSAGE;
    if (seq >= this.nextSeq + MAX_FUTURE_MESSAGES) return FRAGMENT_IGNORED;
    let m = this.messages.get(seq);
    if (m === undefined) {
      if (this.bytes + length > this.maxBytes) return FRAGMENT_IGNORED;
      m = { type, epoch, seq, buf: Buffer.alloc(length), ranges: [] };
      this.messages.set(seq, m);
      this.bytes += length;
    } else if (m.type !== type || m.buf.length !== length || m.epoch !== epoch) {
      return FRAGMENT_IGNORED; // inconsistent fragments of one message: ignore this one
    }
    if (body.length > 0) {
      body.copy(m.buf, off);
      addRange(m.ranges, off, off + body.length);
      if (m.ranges.length > MAX_RANGES) {
        this.messages.delete(seq);
        this.bytes -= length;
        return FRAGMENT_IGNORED;
      }
    }
    return FRAGMENT_KEPT;
  }

  /** The next message in sequence if it is complete (it is removed and `nextSeq` moves on). */
  takeNextComplete(): HandshakeMessageBuffer | undefined {
    const m = this.messages.get(this.nextSeq);
    if (m === undefined || !(m.buf.length === 0 || (m.ranges.length === 2 && m.ranges[0] === 0 && m.ranges[1] === m.buf.length))) return undefined;
    this.messages.delete(this.nextSeq);
    this.bytes -= m.buf.length;
    this.nextSeq++;
    return m;
  }
}

/** Insert [s, e) into a sorted list of disjoint ranges, merging neighbours. */
function addRange(r: number[], s: number, e: number): void {
  const out: number[] = [];
  let i = 0;
  while (i < r.length && r[i + 1]! < s) out.push(r[i++]!, r[i++]!);
  while (i < r.length && r[i]! <= e) {
    s = Math.min(s, r[i]!);
    e = Math.max(e, r[i + 1]!);
    i += 2;
  }
  out.push(s, e);
  while (i < r.length) out.push(r[i++]!);
  r.length = 0;
  r.push(...out);
}
