/* COSE_Sign1 build in place (internal; used by machine.c and the tests). */
#ifndef IDPROV_SIGN_H
#define IDPROV_SIGN_H
#include "idprov.h"

/** Bytes kept free before the payload for the Sig_structure and envelope prefixes. */
#define IDPROV_SIGN1_HEADROOM 24

/**
 * `buf[IDPROV_SIGN1_HEADROOM .. +plen)` holds the payload. Signs the Sig_structure
 * ["Signature1", h'A10127', h'', payload] and writes the untagged envelope
 * [h'A10127', {}, payload, signature] around the payload, in place. Returns the envelope length and
 * sets *start to its offset in buf.
 */
int idprov_sign1_wrap(const idprov_crypto_t *c, const uint8_t seed[32], const uint8_t pk[32], uint8_t *buf,
                      size_t cap, size_t plen, size_t *start);
#endif
