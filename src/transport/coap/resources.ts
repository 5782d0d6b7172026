/**
 * The resources a CoAP server serves, by path, and their RFC 6690 listing at `/.well-known/core`.
 * Registration is checked once, at start-up: a bad resource throws there, never on a request.
 */
import { CoapCode } from '../../protocol/coap-codes.ts';
import type { CoapMethod, CoapResource, Handler } from './api.ts';
import { type Out, isUint } from './exchange.ts';
import { linkFormat, parseFilters, type LinkDescription } from './link-format.ts';
import { METHOD_BY_CODE, type OptionRules } from './options.ts';

/** A registered resource as the server dispatches to it. */
export interface ResourceEntry extends OptionRules {
  desc: LinkDescription;
  methods: Partial<Record<CoapMethod, Handler>>;
  hidden: boolean;
  /** The engine's own `/.well-known/core`. */
  wellKnown: boolean;
}

const PCHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]*$/;
const CF_LINK_FORMAT = 40;
const WELL_KNOWN_CORE = '/.well-known/core';

export class ResourceTable {
  private readonly byPath = new Map<string, ResourceEntry>();
  private readonly links: LinkDescription[] = [];
  /** The unfiltered `/.well-known/core` document, built on first use after a change. */
  private wellKnownDoc: Buffer | undefined;

  constructor() {
    this.byPath.set(WELL_KNOWN_CORE, {
      desc: { path: WELL_KNOWN_CORE, ct: CF_LINK_FORMAT },
      methods: {},
      accepts: undefined,
      ct: CF_LINK_FORMAT,
      hidden: true,
      wellKnown: true,
    });
  }

  get(path: string): ResourceEntry | undefined {
    return this.byPath.get(path);
  }

  /** Register a resource; throws on an invalid path, a duplicate path, or no methods. */
  add(r: CoapResource): void {
    if (typeof r.path !== 'string' || !r.path.startsWith('/') || !r.path.split('/').slice(1).every((s) => PCHARS.test(s))) {
      throw new TypeError(`resource path ${JSON.stringify(r.path)} must be absolute and made of RFC 3986 pchars`);
    }
    if (this.byPath.has(r.path)) throw new TypeError(`resource ${r.path} is already registered`);
    const methods: Partial<Record<CoapMethod, Handler>> = {};
    for (const [m, h] of Object.entries(r.methods ?? {})) {
      if (!METHOD_BY_CODE.includes(m as CoapMethod)) throw new TypeError(`unknown method ${m} on ${r.path}`);
      if (typeof h !== 'function') throw new TypeError(`handler for ${m} ${r.path} is not a function`);
      methods[m as CoapMethod] = h;
    }
    if (Object.keys(methods).length === 0) throw new TypeError(`resource ${r.path} has no methods`);
    if (r.ct !== undefined && !isUint(r.ct, 0xffff)) throw new TypeError(`ct of ${r.path} must be 0..65535`);
    for (const a of r.accepts ?? []) if (!isUint(a, 0xffff)) throw new TypeError(`accepts of ${r.path} must be 0..65535`);
    const desc: LinkDescription = { path: r.path, rt: r.rt, ct: r.ct, title: r.title };
    const hidden = r.hidden === true;
    this.byPath.set(r.path, {
      desc,
      methods,
      accepts: r.accepts === undefined ? undefined : new Set(r.accepts),
      ct: r.ct,
      hidden,
      wellKnown: false,
    });
    if (!hidden) this.links.push(desc);
    this.wellKnownDoc = undefined;
  }

  /** RFC 6690 §4: GET /.well-known/core, with §4.1 query filtering. */
  wellKnown(query: readonly string[], multicast: boolean): Out {
    let payload: Buffer;
    if (query.length === 0) {
      payload = this.wellKnownDoc ??= Buffer.from(linkFormat(this.links, []), 'utf8');
    } else {
      payload = Buffer.from(linkFormat(this.links, parseFilters(query)), 'utf8');
    }
    // RFC 6690 §4.1: a multicast query that matches nothing gets no response at all. A unicast one
    // gets 2.05 with an empty link-format document: the resource exists and the (empty) set of
    // matching links is its correct representation, which lets a client tell "no match" apart from
    // "this server has no discovery resource" (4.04).
    return {
      code: CoapCode.Content,
      contentFormat: CF_LINK_FORMAT,
      maxAge: undefined,
      payload,
      options: undefined,
      cache: true,
      nothing: multicast && payload.length === 0,
    };
  }
}
