/* COSE (RFC 9052): COSE_Sign1 parse and build over the Sig_structure, COSE_KeySet parse. */
#include "internal.h"
#include "idprov_sign.h"
#include <string.h>

/* Protected header: a map with 1 (alg) = -8 (EdDSA); 4 (kid) a byte string when present. */
static int parse_protected(const uint8_t *p, size_t n, idprov_bytes_t *kid) {
  idprov_cbor_dec_t d;
  uint64_t count, i;
  int have_alg = 0;
  IDPROV_TRY(idprov_map_open(p, n, &d, &count));
  kid->ptr = NULL;
  kid->len = 0;
  for (i = 0; i < count; i++) {
    idprov_cbor_item_t k;
    int32_t key = 0, v;
    if (idprov_rd_key(&d, &key, &k) != IDPROV_KEY_INT) {
      idprov_cbor_fast_skip(&d);
      continue;
    }
    if (key == 1) {
      IDPROV_TRY(idprov_rd_int(&d, &v));
      if (v != -8) return IDPROV_ERR_DECODE;
      have_alg = 1;
    } else if (key == 4) {
      IDPROV_TRY(idprov_rd_bstr(&d, 0, 64, kid));
    } else {
      idprov_cbor_fast_skip(&d);
    }
  }
  return have_alg ? IDPROV_OK : IDPROV_ERR_DECODE;
}

int idprov_sign1_parse(const uint8_t *p, size_t n, idprov_sign1_t *out) {
  idprov_cbor_dec_t d;
  idprov_cbor_item_t it;
  IDPROV_TRY(idprov_cbor_check(p, n));
  idprov_cbor_dec_init(&d, p, n);
  IDPROV_TRY(idprov_cbor_next(&d, &it));
  if (it.major == IDPROV_CBOR_TAG) { /* the check allows tag 18 only; once */
    IDPROV_TRY(idprov_cbor_next(&d, &it));
  }
  if (it.major != IDPROV_CBOR_ARRAY || it.arg != 4) return IDPROV_ERR_DECODE;
  IDPROV_TRY(idprov_rd_bstr(&d, 0, n, &out->protected_hdr));
  IDPROV_TRY(idprov_rd(&d, IDPROV_CBOR_MAP, &it));
  d.p = it.start; /* step over the unprotected map, validated already */
  idprov_cbor_fast_skip(&d);
  IDPROV_TRY(idprov_rd_bstr(&d, 0, n, &out->payload));
  IDPROV_TRY(idprov_rd_bstr(&d, 64, 64, &out->signature));
  return parse_protected(out->protected_hdr.ptr, out->protected_hdr.len, &out->kid);
}

int idprov_sig_structure(uint8_t *buf, size_t cap, const uint8_t *prot, size_t prot_len, const uint8_t *payload,
                         size_t payload_len) {
  idprov_cbor_enc_t e;
  idprov_cbor_enc_init(&e, buf, cap);
  idprov_cbor_put_array(&e, 4);
  idprov_cbor_put_text(&e, "Signature1", 10);
  idprov_cbor_put_bytes(&e, prot, prot_len);
  idprov_cbor_put_bytes(&e, NULL, 0);
  idprov_cbor_put_bytes(&e, payload, payload_len);
  if (e.err) return e.err;
  return (int)e.len;
}

static const uint8_t PROT_EDDSA[3] = {0xa1, 0x01, 0x27};

/* Length of a CBOR head for argument n. */
static size_t head_len(size_t n) { return n < 24 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5; }

int idprov_sign1_wrap(const idprov_crypto_t *c, const uint8_t seed[32], const uint8_t pk[32], uint8_t *buf,
                      size_t cap, size_t plen, size_t *start) {
  idprov_cbor_enc_t e;
  uint8_t sig[64];
  size_t hl = head_len(plen), sig_pre = 1 + 11 + 4 + 1 + hl, env_pre = 1 + 4 + 1 + hl, s;
  if (plen > 0xffff || cap < IDPROV_SIGN1_HEADROOM || plen > cap - IDPROV_SIGN1_HEADROOM ||
      cap - IDPROV_SIGN1_HEADROOM - plen < 66)
    return IDPROV_ERR_BUFFER;
  /* Sig_structure ["Signature1", h'A10127', h'', payload] right before the payload. */
  s = IDPROV_SIGN1_HEADROOM - sig_pre;
  idprov_cbor_enc_init(&e, buf + s, sig_pre);
  idprov_cbor_put_array(&e, 4);
  idprov_cbor_put_text(&e, "Signature1", 10);
  idprov_cbor_put_bytes(&e, PROT_EDDSA, 3);
  idprov_cbor_put_bytes(&e, NULL, 0);
  idprov_cbor_put_head(&e, IDPROV_CBOR_BYTES, plen);
  if (e.err || e.len != sig_pre) return IDPROV_ERR_BUFFER;
  if (c->sign(c->user, sig, buf + s, sig_pre + plen, seed, pk) != 0) return IDPROV_ERR_CRYPTO;
  /* Envelope [h'A10127', {}, payload, signature], untagged, in place. */
  s = IDPROV_SIGN1_HEADROOM - env_pre;
  idprov_cbor_enc_init(&e, buf + s, env_pre);
  idprov_cbor_put_array(&e, 4);
  idprov_cbor_put_bytes(&e, PROT_EDDSA, 3);
  idprov_cbor_put_map(&e, 0);
  idprov_cbor_put_head(&e, IDPROV_CBOR_BYTES, plen);
  idprov_cbor_enc_init(&e, buf + IDPROV_SIGN1_HEADROOM + plen, 66);
  idprov_cbor_put_bytes(&e, sig, 64);
  *start = s;
  return (int)(env_pre + plen + 66);
}

/* One COSE_Key of the set: {1: 1, 2: kid(8), 3: -8?, -1: 6, -2: x(32)}; other parameters ignored. */
static int parse_key(idprov_cbor_dec_t *d, idprov_key_t *k) {
  idprov_cbor_item_t it;
  uint64_t i;
  unsigned seen = 0;
  IDPROV_TRY(idprov_rd(d, IDPROV_CBOR_MAP, &it));
  for (i = 0; i < it.arg; i++) {
    idprov_cbor_item_t kit;
    int32_t key = 0, v;
    idprov_bytes_t b;
    if (idprov_rd_key(d, &key, &kit) != IDPROV_KEY_INT) {
      idprov_cbor_fast_skip(d);
      continue;
    }
    switch (key) {
    case 1:
      IDPROV_TRY(idprov_rd_int(d, &v));
      if (v != 1) return IDPROV_ERR_DECODE;
      seen |= 1;
      break;
    case 2:
      IDPROV_TRY(idprov_rd_bstr(d, IDPROV_KID_LEN, IDPROV_KID_LEN, &b));
      if (k) memcpy(k->kid, b.ptr, IDPROV_KID_LEN);
      seen |= 2;
      break;
    case 3:
      IDPROV_TRY(idprov_rd_int(d, &v));
      if (v != -8) return IDPROV_ERR_DECODE;
      break;
    case -1:
      IDPROV_TRY(idprov_rd_int(d, &v));
      if (v != 6) return IDPROV_ERR_DECODE;
      seen |= 4;
      break;
    case -2:
      IDPROV_TRY(idprov_rd_bstr(d, 32, 32, &b));
      if (k) memcpy(k->x, b.ptr, 32);
      seen |= 8;
      break;
    default:
      idprov_cbor_fast_skip(d);
    }
  }
  return seen == 15 ? IDPROV_OK : IDPROV_ERR_DECODE;
}

int idprov_keyset_parse(const uint8_t *p, size_t n, idprov_key_t *keys, size_t cap, size_t *count) {
  idprov_cbor_dec_t d;
  idprov_cbor_item_t it;
  uint64_t i;
  IDPROV_TRY(idprov_cbor_check(p, n));
  idprov_cbor_dec_init(&d, p, n);
  IDPROV_TRY(idprov_rd(&d, IDPROV_CBOR_ARRAY, &it));
  for (i = 0; i < it.arg; i++) IDPROV_TRY(parse_key(&d, i < cap ? &keys[i] : NULL));
  *count = (size_t)it.arg;
  return IDPROV_OK;
}
