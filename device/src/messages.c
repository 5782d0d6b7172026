/* idprov v1 messages: request/refresh bodies (docs/spec/idprov-coap-v1.md §2), responses (§4), CWT claims (§5). */
#include "internal.h"
#include <string.h>

int idprov_id_valid(const char *id) {
  size_t i;
  if (id == NULL) return 0;
  for (i = 0; id[i]; i++) {
    char ch = id[i];
    int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
             ch == '_' || ch == ':' || ch == '-';
    if (!ok || i >= IDPROV_ID_MAX) return 0;
  }
  return i >= 1;
}

static int nonce_ok(const uint8_t *n, size_t len) {
  return n == NULL || (len >= IDPROV_NONCE_MIN && len <= IDPROV_NONCE_MAX);
}

/* One optional entry of a body map: key and byte string (absent when p is NULL). */
typedef struct {
  uint8_t key;
  const uint8_t *p;
  size_t n;
} entry_t;

/* {1: id, <entries in ascending key order>}: core deterministic encoding. */
static int build_map(const char *id, const entry_t *en, size_t count, uint8_t *buf, size_t cap) {
  idprov_cbor_enc_t e;
  size_t i, n = 1;
  for (i = 0; i < count; i++) n += en[i].p != NULL;
  idprov_cbor_enc_init(&e, buf, cap);
  idprov_cbor_put_map(&e, n);
  idprov_cbor_put_uint(&e, 1);
  idprov_cbor_put_text(&e, id, strlen(id));
  for (i = 0; i < count; i++) {
    if (!en[i].p) continue;
    idprov_cbor_put_uint(&e, en[i].key);
    if (en[i].key == 5) idprov_cbor_put_uint(&e, en[i].n); /* type: an integer */
    else idprov_cbor_put_bytes(&e, en[i].p, en[i].n);
  }
  return e.err ? e.err : (int)e.len;
}

int idprov_request_body_build(const idprov_request_body_t *b, uint8_t *buf, size_t cap) {
  static const uint8_t one = 1;
  entry_t en[6];
  if (!idprov_id_valid(b->id) || b->pk == NULL || !nonce_ok(b->nonce, b->nonce_len) || b->type > 2 ||
      (b->mac && b->mac_len != 6 && b->mac_len != 8))
    return IDPROV_ERR_ARG;
  en[0].key = 2; en[0].p = b->pk; en[0].n = 32;
  en[1].key = 3; en[1].p = b->mac; en[1].n = b->mac_len;
  en[2].key = 4; en[2].p = b->nonce; en[2].n = b->nonce_len;
  en[3].key = 5; en[3].p = b->type ? &one : NULL; en[3].n = b->type; /* 0 (device) is the default: omitted */
  en[4].key = 6; en[4].p = b->xk; en[4].n = 32;
  en[5].key = 7; en[5].p = b->oob; en[5].n = 32;
  return build_map(b->id, en, 6, buf, cap);
}

int idprov_refresh_body_build(const idprov_refresh_body_t *b, uint8_t *buf, size_t cap) {
  entry_t en[3];
  if (!idprov_id_valid(b->id) || !nonce_ok(b->nonce, b->nonce_len) || b->token == NULL || b->token_len == 0 ||
      b->token_len > IDPROV_TOKEN_MAX)
    return IDPROV_ERR_ARG;
  en[0].key = 4; en[0].p = b->nonce; en[0].n = b->nonce_len;
  en[1].key = 6; en[1].p = b->xk; en[1].n = 32;
  en[2].key = 8; en[2].p = b->token; en[2].n = b->token_len;
  return build_map(b->id, en, 3, buf, cap);
}

static int rd_uint(idprov_cbor_dec_t *d, uint64_t *v) {
  idprov_cbor_item_t it;
  IDPROV_TRY(idprov_rd(d, IDPROV_CBOR_UINT, &it));
  *v = it.arg;
  return IDPROV_OK;
}

static int rd_text(idprov_cbor_dec_t *d, idprov_bytes_t *out) {
  idprov_cbor_item_t it;
  IDPROV_TRY(idprov_rd(d, IDPROV_CBOR_TEXT, &it));
  out->ptr = it.ptr;
  out->len = (size_t)it.arg;
  return IDPROV_OK;
}

/* Key 13: [epk: bstr 32, nonce: bstr 24, box: bstr ≥ 16 (the Poly1305 tag)]. */
static int rd_sealed(idprov_cbor_dec_t *d, idprov_response_t *r) {
  idprov_cbor_item_t it;
  IDPROV_TRY(idprov_rd(d, IDPROV_CBOR_ARRAY, &it));
  if (it.arg != 3) return IDPROV_ERR_DECODE;
  IDPROV_TRY(idprov_rd_bstr(d, 32, 32, &r->epk));
  IDPROV_TRY(idprov_rd_bstr(d, 24, 24, &r->box_nonce));
  return idprov_rd_bstr(d, 16, IDPROV_TOKEN_MAX + 16, &r->box);
}

int idprov_response_parse(const uint8_t *p, size_t n, idprov_response_t *r) {
  idprov_cbor_dec_t d;
  uint64_t count, i, v;
  memset(r, 0, sizeof *r);
  IDPROV_TRY(idprov_map_open(p, n, &d, &count));
  for (i = 0; i < count; i++) {
    idprov_cbor_item_t k;
    int32_t key = -1;
    if (idprov_rd_key(&d, &key, &k) != IDPROV_KEY_INT || key < 0 || key > 15) {
      idprov_cbor_fast_skip(&d);
      continue;
    }
    switch (key) {
    case 0:
      IDPROV_TRY(rd_uint(&d, &v));
      if (v > 2) return IDPROV_ERR_DECODE;
      r->status = (unsigned)v;
      break;
    case 4: IDPROV_TRY(idprov_rd_bstr(&d, IDPROV_NONCE_MIN, IDPROV_NONCE_MAX, &r->nonce)); break;
    case 8: IDPROV_TRY(idprov_rd_bstr(&d, 1, IDPROV_TOKEN_MAX, &r->token)); break;
    case 9: IDPROV_TRY(rd_uint(&d, &r->exp)); break;
    case 10: IDPROV_TRY(rd_uint(&d, &r->retry)); break;
    case 11: IDPROV_TRY(rd_uint(&d, &r->ttl)); break;
    case 12: IDPROV_TRY(rd_text(&d, &r->diag)); break;
    case 13: IDPROV_TRY(rd_sealed(&d, r)); break;
    case 14: IDPROV_TRY(rd_text(&d, &r->hub)); break;
    case 15: IDPROV_TRY(rd_uint(&d, &r->err)); break;
    default: idprov_cbor_fast_skip(&d); continue;
    }
    r->has |= 1u << key;
  }
  return IDPROV_OK;
}

/* cnf: {1: COSE_Key {1: 1 (OKP), -1: 6 (Ed25519), -2: x (32)}}; other parameters ignored. */
static int rd_cose_key(idprov_cbor_dec_t *d, uint8_t x[32]) {
  idprov_cbor_item_t it;
  uint64_t i;
  unsigned seen = 0;
  IDPROV_TRY(idprov_rd(d, IDPROV_CBOR_MAP, &it));
  for (i = 0; i < it.arg; i++) {
    idprov_cbor_item_t k;
    int32_t key = 0, v;
    idprov_bytes_t b;
    if (idprov_rd_key(d, &key, &k) != IDPROV_KEY_INT) {
      idprov_cbor_fast_skip(d);
      continue;
    }
    if (key == 1 || key == -1) {
      IDPROV_TRY(idprov_rd_int(d, &v));
      if (v != (key == 1 ? 1 : 6)) return IDPROV_ERR_DECODE;
      seen |= key == 1 ? 1u : 2u;
    } else if (key == -2) {
      IDPROV_TRY(idprov_rd_bstr(d, 32, 32, &b));
      memcpy(x, b.ptr, 32);
      seen |= 4;
    } else {
      idprov_cbor_fast_skip(d);
    }
  }
  return seen == 7 ? IDPROV_OK : IDPROV_ERR_DECODE;
}

static int rd_cnf(idprov_cbor_dec_t *d, uint8_t x[32]) {
  idprov_cbor_item_t it;
  uint64_t i;
  int seen = 0;
  IDPROV_TRY(idprov_rd(d, IDPROV_CBOR_MAP, &it));
  for (i = 0; i < it.arg; i++) {
    idprov_cbor_item_t k;
    int32_t key = 0;
    if (idprov_rd_key(d, &key, &k) == IDPROV_KEY_INT && key == 1) {
      IDPROV_TRY(rd_cose_key(d, x));
      seen = 1;
    } else {
      idprov_cbor_fast_skip(d);
    }
  }
  return seen ? IDPROV_OK : IDPROV_ERR_DECODE;
}

int idprov_claims_parse(const uint8_t *p, size_t n, idprov_claims_t *c) {
  idprov_cbor_dec_t d;
  uint64_t count, i;
  unsigned seen = 0;
  memset(c, 0, sizeof *c);
  IDPROV_TRY(idprov_map_open(p, n, &d, &count));
  for (i = 0; i < count; i++) {
    idprov_cbor_item_t k;
    int32_t key = 0;
    int kind = idprov_rd_key(&d, &key, &k);
    if (kind == IDPROV_KEY_TEXT && idprov_text_is(&k, "role")) {
      IDPROV_TRY(rd_text(&d, &c->role));
      c->has_role = 1;
      continue;
    }
    if (kind != IDPROV_KEY_INT) {
      idprov_cbor_fast_skip(&d);
      continue;
    }
    switch (key) {
    case 1: IDPROV_TRY(rd_text(&d, &c->iss)); break;
    case 2: IDPROV_TRY(rd_text(&d, &c->sub)); break;
    case 3: IDPROV_TRY(rd_text(&d, &c->aud)); c->has_aud = 1; break;
    case 4: IDPROV_TRY(rd_uint(&d, &c->exp)); break;
    case 6: IDPROV_TRY(rd_uint(&d, &c->iat)); break;
    case 7: IDPROV_TRY(idprov_rd_bstr(&d, 8, 16, &c->cti)); break;
    case 8: IDPROV_TRY(rd_cnf(&d, c->cnf)); break;
    default: idprov_cbor_fast_skip(&d); continue;
    }
    seen |= 1u << key;
  }
  /* required: iss, sub, exp, iat, cti, cnf */
  return (seen & 0x1d6u) == 0x1d6u ? IDPROV_OK : IDPROV_ERR_DECODE;
}
