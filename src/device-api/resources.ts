/**
 * The device API over CoAP (docs/spec/idprov-coap-v1.md §1): the `/idprov/*` resources on a CoAP
 * engine, and the one mapping of a service {@link Outcome} to a CoAP response. The provisioning
 * service knows nothing of CoAP; the engine knows nothing of idprov; this room joins them.
 */
import { CoapCode } from '../protocol/coap-codes.ts';
import { CF } from '../protocol/content-formats.ts';
import { encodeResponse } from '../protocol/messages.ts';
import { outcomeCode } from '../protocol/outcomes.ts';
import type { Outcome, ProvisioningService, RequestContext } from '../service/provisioning.ts';
import type { CoapRequest, CoapResponse, CoapServer } from '../transport/coap/engine.ts';

/**
 * Keys listed by CoAP `/idprov/keys` at most: the signing key and the newest retired ones that can
 * still verify a live token (issue 11 F5). The sidecar's key set lists all of them.
 */
export const COAP_MAX_KEYS = 8;

/** The idprov POST resources (docs/spec/idprov-coap-v1.md §1): their requests are limited by the provisioning service. */
export const IDPROV_POSTS: ReadonlySet<string> = new Set(['/idprov/request', '/idprov/refresh']);

/** The CoAP response code of a service outcome (docs/spec/idprov-coap-v1.md §4.2). */
export function coapCode(o: Outcome): CoapCode {
  return outcomeCode(o);
}

/**
 * Encode a service outcome as a CoAP response, once: its code, the body as CBOR (Content-Format 60),
 * Max-Age = retry. The engine writes the code number into the header as it is.
 */
export function toCoap(o: Outcome): CoapResponse {
  const r: CoapResponse = { code: coapCode(o), contentFormat: CF.cbor, payload: encodeResponse(o.body) };
  if (o.retry !== undefined) r.maxAge = o.retry;
  return r;
}

/** Where a CoAP request came from, as the service sees it: the peer's address and port, as values. */
export function contextOf(req: CoapRequest): RequestContext {
  const c: RequestContext = { source: { address: req.peer.address, port: req.peer.port } };
  if (req.peer.pskIdentity !== undefined && req.peer.pskMatches !== undefined) {
    c.pskIdentity = req.peer.pskIdentity;
    c.pskMatches = req.peer.pskMatches;
  }
  return c;
}

/**
 * Register the resources of docs/spec/idprov-coap-v1.md §1 on a CoAP engine. `keySet` answers `/idprov/keys`
 * (default: the service's full key set).
 */
export function registerResources(coap: CoapServer, service: ProvisioningService, keySet: () => Buffer = () => service.keySet()): void {
  for (const [path, handle] of [
    ['request', (p: Buffer, c: RequestContext) => service.request(p, c)],
    ['refresh', (p: Buffer, c: RequestContext) => service.refresh(p, c)],
  ] as const) {
    coap.addResource({
      path: `/idprov/${path}`,
      rt: `idprov.${path}`,
      ct: CF.cbor,
      accepts: [CF.coseSign1],
      methods: { POST: async (req) => toCoap(await handle(req.payload, contextOf(req))) },
    });
  }
  coap.addResource({
    path: '/idprov/keys',
    rt: 'idprov.keys',
    ct: CF.coseKeySet,
    methods: { GET: () => ({ code: CoapCode.Content, contentFormat: CF.coseKeySet, payload: keySet() }) },
  });
}
