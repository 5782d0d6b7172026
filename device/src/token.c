/* Tokens (docs/spec/idprov-coap-v1.md §5): key fingerprint and kid, sealed-token open, token verification. */
#include "internal.h"
#include <string.h>

int idprov_fingerprint(const idprov_crypto_t *c, const uint8_t pk[32], char out[IDPROV_FINGERPRINT_SIZE]) {
  /* Crockford base32 (no I, L, O, U) of SHA-256(pk)[0..10], four groups of four (docs/spec §5). */
  static const char B32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  uint8_t h[32];
  size_t b, o = 0;
  int k;
  c->sha256(c->user, h, pk, 32);
  for (b = 0; b < 10; b += 5) { /* two 40-bit blocks, 8 symbols each, most significant first */
    uint64_t v = ((uint64_t)h[b] << 32) | ((uint64_t)h[b + 1] << 24) | ((uint64_t)h[b + 2] << 16) |
                 ((uint64_t)h[b + 3] << 8) | h[b + 4];
    for (k = 7; k >= 0; k--) {
      if (o == 4 || o == 9 || o == 14) out[o++] = '-';
      out[o++] = B32[(v >> (5 * k)) & 31u];
    }
  }
  out[o] = '\0';
  return IDPROV_OK;
}

void idprov_kid_of(const idprov_crypto_t *c, const uint8_t pk[32], uint8_t kid[IDPROV_KID_LEN]) {
  uint8_t h[32];
  c->sha256(c->user, h, pk, 32);
  memcpy(kid, h, IDPROV_KID_LEN);
}

int idprov_token_unseal(const idprov_crypto_t *c, const idprov_response_t *r, const uint8_t xsk[32], uint8_t *out,
                        size_t cap) {
  size_t n;
  if (!(r->has & IDPROV_R_SEALED) || r->box.len < 16) return IDPROV_ERR_ARG;
  n = r->box.len - 16;
  if (n > cap) return IDPROV_ERR_BUFFER;
  if (c->box_open(c->user, out, r->box.ptr, r->box.len, r->box_nonce.ptr, r->epk.ptr, xsk) != 0)
    return IDPROV_ERR_CRYPTO;
  return (int)n;
}

int idprov_token_verify(const idprov_crypto_t *c, const uint8_t *tok, size_t tok_len, const idprov_key_t *keys,
                        size_t nkeys, uint8_t *scratch, size_t scratch_cap, idprov_claims_t *claims) {
  idprov_sign1_t s;
  size_t i;
  int n;
  IDPROV_TRY(idprov_sign1_parse(tok, tok_len, &s));
  IDPROV_TRY(idprov_claims_parse(s.payload.ptr, s.payload.len, claims));
  if (keys == NULL) return IDPROV_OK;
  if (s.kid.len != IDPROV_KID_LEN) return IDPROV_ERR_NOT_FOUND;
  for (i = 0; i < nkeys; i++) {
    if (memcmp(keys[i].kid, s.kid.ptr, IDPROV_KID_LEN) != 0) continue;
    n = idprov_sig_structure(scratch, scratch_cap, s.protected_hdr.ptr, s.protected_hdr.len, s.payload.ptr,
                             s.payload.len);
    if (n < 0) return n;
    return c->verify(c->user, s.signature.ptr, scratch, (size_t)n, keys[i].x) == 0 ? IDPROV_OK : IDPROV_ERR_CRYPTO;
  }
  return IDPROV_ERR_NOT_FOUND;
}
