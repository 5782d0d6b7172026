/**
 * The Block2 layer of the CoAP engine (RFC 7959 §2.2–§2.4): which slice of a representation one
 * response carries, in a block size that is ours or the client's, whichever is smaller, and smaller
 * still while the datagram exceeds the exchange's amplification budget (RFC 7252 §11.3; RFC 7959
 * §2.2 lets the server pick a smaller block than asked). The first block of a large success keeps the
 * whole representation in the {@link BlockCache}, so that the following blocks are served without
 * running the handler again.
 */
import { CoapCode } from '../../protocol/coap-codes.ts';
import { BlockCache, type BlockCacheLimits, etagOf } from './block-cache.ts';
import { EMPTY, type Exchange, type Out } from './exchange.ts';
import type { BlockOptions, ResponseEncoder } from './options.ts';

/** {@link Block2Layer.fit}: the client asked for a block past the end of the representation. */
export const BEYOND_END = 0;
/** {@link Block2Layer.fit}: the handler's options make the message too large; see `encodeError`. */
export const ENCODE_FAILED = 1;
/** {@link Block2Layer.fit}: not even the smallest form fits the exchange's amplification budget. */
export const DOES_NOT_FIT = 2;

/** The slice of a representation one response carries. */
interface BlockPlan extends BlockOptions {
  /** The first block of a block-wise success: keep the whole representation for the next blocks. */
  cacheable: boolean;
}

export class Block2Layer {
  private readonly cache: BlockCache;
  /** Reused for every response (no allocation per datagram); valid until the next {@link fit}. */
  private readonly plan: BlockPlan = { start: 0, end: 0, block2: -1, size2: -1, etag: undefined, cacheable: false };
  /** After a successful {@link fit}: the response as sent (its diagnostic may have been dropped). */
  fitted: Out | undefined;
  /** After a successful {@link fit}: it was cut to fit an amplification budget or the smallest form. */
  bounded = false;
  /** After {@link ENCODE_FAILED}: why. */
  encodeError: unknown;

  constructor(
    /** Our block size, as SZX. */
    private readonly szx: number,
    cacheLimits: BlockCacheLimits,
    private readonly encoder: ResponseEncoder,
  ) {
    this.cache = new BlockCache(cacheLimits);
  }

  get cachedEntries(): number {
    return this.cache.size;
  }

  get cachedBytes(): number {
    return this.cache.byteCount;
  }

  clear(): void {
    this.cache.clear();
  }

  /** RFC 7959 §2.4: a later block of a representation we still hold for this peer and request. */
  cachedBlock(ex: Exchange, now: number): Out | undefined {
    const rep = this.cache.get(blockKey(ex), now);
    if (rep === undefined) return undefined;
    return {
      code: rep.code,
      contentFormat: rep.contentFormat,
      maxAge: rep.maxAge,
      payload: rep.payload,
      options: rep.options,
      etag: rep.etag,
      handlerEtag: rep.handlerEtag,
      cache: true,
    };
  }

  /**
   * Encode `out` for `ex` as message `type`/`mid`: the block the client asked for, shrunk until
   * the datagram fits `ex.budget` (a smaller block for a success, no diagnostic for an error).
   * Returns the datagram (then {@link fitted} and {@link bounded} say what was sent), or
   * {@link BEYOND_END}, {@link ENCODE_FAILED} or {@link DOES_NOT_FIT}.
   */
  fit(ex: Exchange, out: Out, type: number, mid: number, now: number): Buffer | number {
    const cls = out.code >> 5;
    const req2 = ex.block2;
    const reqSzx = req2 >= 0 ? req2 & 7 : 7;
    let szx = reqSzx < this.szx ? reqSzx : this.szx;
    let bounded = false;
    if (ex.smallest) {
      // Over the source's limit: the smallest form from the start (RFC 7959 §2.2, RFC 7252 §5.5.2).
      bounded = true;
      if (cls === 2) szx = 0;
      else if (out.payload.length > 0) out = { ...out, payload: EMPTY };
    }
    const p = this.plan;
    let data: Buffer;
    for (;;) {
      if (!this.planBlock(ex, out, cls, reqSzx, szx)) return BEYOND_END;
      try {
        data = this.encoder.encode(type, out, mid, ex.token, p);
      } catch (err) {
        // Only handler-supplied options can make a message too large.
        if (out.code === CoapCode.InternalServerError) throw err;
        this.encodeError = err;
        return ENCODE_FAILED;
      }
      if (data.length <= ex.budget) break;
      bounded = true;
      const len = out.payload.length;
      if (cls === 2 && szx > 0 && len > 16) {
        // The largest block that still splits the representation, if smaller than the current one.
        szx = Math.min(szx - 1, Math.max(0, Math.ceil(Math.log2(len)) - 5));
        continue;
      }
      if (cls !== 2 && out.payload.length > 0) {
        out = { ...out, payload: EMPTY }; // the diagnostic payload is optional (§5.5.2)
        continue;
      }
      return DOES_NOT_FIT;
    }
    this.fitted = out;
    this.bounded = bounded;
    if (p.cacheable) this.keep(ex, out, p.etag, now);
    return data;
  }

  /** Keep the whole representation of a first block for the following blocks. */
  private keep(ex: Exchange, out: Out, etag: Buffer | undefined, now: number): void {
    this.cache.set(
      blockKey(ex),
      {
        code: out.code,
        contentFormat: out.contentFormat,
        maxAge: out.maxAge,
        etag,
        handlerEtag: out.handlerEtag === true,
        payload: out.payload,
        options: out.options,
      },
      now,
    );
  }

  /**
   * Fill {@link plan} with the part of `out` to send with block size SZX `szx` (the client asked in
   * `reqSzx`, whose block numbers count in its own size, §2.4). False when the requested block is
   * past the end.
   */
  private planBlock(ex: Exchange, out: Out, cls: number, reqSzx: number, szx: number): boolean {
    const payload = out.payload;
    const len = payload.length;
    const req2 = ex.block2;
    const bs = 1 << (szx + 4);
    // Only a success is served from a later block; an error is sent from its start.
    const wantNum = cls === 2 && req2 >= 16 ? Math.floor(req2 / 16) : 0;
    const p = this.plan;
    p.start = 0;
    p.end = len;
    p.block2 = -1;
    p.size2 = ex.size2 && cls === 2 && !ex.smallest ? len : -1;
    p.etag = undefined;
    p.cacheable = false;
    if (len > bs || wantNum > 0) {
      // The client's block number counts in its own block size; renumber in ours (§2.4).
      p.start = wantNum * (1 << (reqSzx + 4));
      if (p.start >= len) return false;
      p.end = p.start + bs < len ? p.start + bs : len;
      const more = p.end < len;
      p.block2 = (p.start / bs) * 16 + (more ? 8 : 0) + szx;
      if (p.start === 0 && !ex.smallest) p.size2 = len;
      if (len > bs) {
        if (out.handlerEtag !== true) p.etag = out.etag ?? etagOf(payload);
        p.cacheable = p.start === 0 && out.cache && cls === 2 && ex.method !== undefined;
      }
    } else if (req2 >= 0 && cls === 2) {
      p.block2 = szx; // NUM 0, M 0: the whole representation fits in the block the client asked for
    }
    return true;
  }
}

/** RFC 7959 §2.4: the blocks of one representation are tied by peer, method and request URI. */
function blockKey(ex: Exchange): string {
  const q = ex.query;
  return ex.peerId + ' ' + ex.method + ' ' + ex.path + (q.length === 0 ? '' : '?' + q.join('&'));
}
