/*
 * Deterministic CBOR subset encoder and strict bounded decoder (RFC 8949).
 *
 * Encoder: shortest heads, definite lengths only (core deterministic encoding, §4.2.1); the caller
 * writes map keys in ascending order.
 *
 * Decoder: the idprov v1 subset — unsigned and negative integers, byte and text strings, arrays,
 * maps, false/true/null, tag 18 — and stricter than the server's decoder where a device can afford
 * to be, because everything it reads was encoded deterministically by the server:
 * refused are indefinite lengths, non-shortest heads, floats, undefined and other simple values,
 * every tag but 18, nesting past IDPROV_CBOR_MAX_DEPTH, arrays past IDPROV_CBOR_MAX_ARRAY, maps past
 * IDPROV_CBOR_MAX_MAP entries, map keys that are not integers or strings, duplicate map keys
 * (compared by their encoded bytes, which is comparison by value once heads are shortest), and input
 * longer than IDPROV_CBOR_MAX_ITEM. No recursion deeper than the depth limit, no heap.
 */
#include "idprov.h"
#include <string.h>

void idprov_cbor_enc_init(idprov_cbor_enc_t *e, uint8_t *buf, size_t cap) {
  e->buf = buf;
  e->cap = cap;
  e->len = 0;
  e->err = IDPROV_OK;
}

static void put(idprov_cbor_enc_t *e, const uint8_t *p, size_t n) {
  if (e->err) return;
  if (n > e->cap - e->len) {
    e->err = IDPROV_ERR_BUFFER;
    return;
  }
  if (n) memcpy(e->buf + e->len, p, n);
  e->len += n;
}

void idprov_cbor_put_head(idprov_cbor_enc_t *e, uint8_t major, uint64_t arg) {
  uint8_t h[9];
  size_t n, i;
  uint8_t mt = (uint8_t)(major << 5);
  if (arg < 24) {
    h[0] = (uint8_t)(mt | arg);
    n = 1;
  } else if (arg <= 0xffu) {
    h[0] = (uint8_t)(mt | 24);
    n = 2;
  } else if (arg <= 0xffffu) {
    h[0] = (uint8_t)(mt | 25);
    n = 3;
  } else if (arg <= 0xffffffffu) {
    h[0] = (uint8_t)(mt | 26);
    n = 5;
  } else {
    h[0] = (uint8_t)(mt | 27);
    n = 9;
  }
  for (i = n - 1; i >= 1; i--) {
    h[i] = (uint8_t)(arg & 0xffu);
    arg >>= 8;
  }
  put(e, h, n);
}

void idprov_cbor_put_uint(idprov_cbor_enc_t *e, uint64_t v) { idprov_cbor_put_head(e, IDPROV_CBOR_UINT, v); }

void idprov_cbor_put_int(idprov_cbor_enc_t *e, int64_t v) {
  if (v >= 0) idprov_cbor_put_head(e, IDPROV_CBOR_UINT, (uint64_t)v);
  else idprov_cbor_put_head(e, IDPROV_CBOR_NINT, (uint64_t)(-(v + 1)));
}

void idprov_cbor_put_bytes(idprov_cbor_enc_t *e, const uint8_t *p, size_t n) {
  idprov_cbor_put_head(e, IDPROV_CBOR_BYTES, n);
  put(e, p, n);
}

void idprov_cbor_put_text(idprov_cbor_enc_t *e, const char *p, size_t n) {
  idprov_cbor_put_head(e, IDPROV_CBOR_TEXT, n);
  put(e, (const uint8_t *)p, n);
}

void idprov_cbor_put_array(idprov_cbor_enc_t *e, size_t n) { idprov_cbor_put_head(e, IDPROV_CBOR_ARRAY, n); }
void idprov_cbor_put_map(idprov_cbor_enc_t *e, size_t n) { idprov_cbor_put_head(e, IDPROV_CBOR_MAP, n); }

/* ---------------------------------------------------------------------------------------------- */

void idprov_cbor_dec_init(idprov_cbor_dec_t *d, const uint8_t *p, size_t n) {
  d->p = p;
  d->end = p + n;
}

int idprov_cbor_next(idprov_cbor_dec_t *d, idprov_cbor_item_t *it) {
  const uint8_t *p = d->p;
  size_t rem, nb, i;
  uint8_t ib, ai;
  uint64_t arg;
  if (p >= d->end) return IDPROV_ERR_DECODE;
  ib = *p++;
  rem = (size_t)(d->end - p);
  it->start = d->p;
  it->major = (uint8_t)(ib >> 5);
  ai = (uint8_t)(ib & 31u);
  if (ai < 24) {
    arg = ai;
  } else if (ai <= 27) {
    static const uint64_t min_for[4] = {24u, 0x100u, 0x10000u, 0x100000000u};
    nb = (size_t)1 << (ai - 24);
    if (rem < nb) return IDPROV_ERR_DECODE;
    arg = 0;
    for (i = 0; i < nb; i++) arg = (arg << 8) | p[i];
    p += nb;
    rem -= nb;
    /* shortest form only; this also refuses floats (major 7, ai 25..27) and simple(24..255) */
    if (arg < min_for[ai - 24] || it->major == IDPROV_CBOR_SIMPLE) return IDPROV_ERR_DECODE;
  } else {
    return IDPROV_ERR_DECODE; /* 28..30 reserved, 31 indefinite length / break */
  }
  if (it->major == IDPROV_CBOR_SIMPLE && (arg < 20 || arg > 22)) return IDPROV_ERR_DECODE;
  it->arg = arg;
  it->ptr = p;
  if (it->major == IDPROV_CBOR_BYTES || it->major == IDPROV_CBOR_TEXT) {
    if (arg > rem) return IDPROV_ERR_DECODE;
    p += (size_t)arg;
  }
  d->p = p;
  return IDPROV_OK;
}

/* Steps over an item already validated by idprov_cbor_skip (no checks, iterative). */
void idprov_cbor_fast_skip(idprov_cbor_dec_t *d);
void idprov_cbor_fast_skip(idprov_cbor_dec_t *d) {
  uint64_t need = 1;
  idprov_cbor_item_t it;
  while (need) {
    if (idprov_cbor_next(d, &it) != IDPROV_OK) return;
    need--;
    if (it.major == IDPROV_CBOR_ARRAY) need += it.arg;
    else if (it.major == IDPROV_CBOR_MAP) need += 2 * it.arg;
    else if (it.major == IDPROV_CBOR_TAG) need += 1;
  }
}

/* Does the key encoded at [k, k_end) equal one of the first `count` keys of the map at `first`? */
static int key_seen(const uint8_t *first, const uint8_t *end, uint64_t count, const uint8_t *k, const uint8_t *k_end) {
  idprov_cbor_dec_t w;
  uint64_t j;
  size_t klen = (size_t)(k_end - k);
  w.p = first;
  w.end = end;
  for (j = 0; j < count; j++) {
    const uint8_t *s = w.p;
    idprov_cbor_fast_skip(&w);
    if ((size_t)(w.p - s) == klen && memcmp(s, k, klen) == 0) return 1;
    idprov_cbor_fast_skip(&w);
  }
  return 0;
}

/* Validation without recursion: one small record per open array/map/tag (the depth limit bounds them),
   so the stack cost is one frame however deep the input nests. */
typedef struct {
  const uint8_t *first; /* a map's first key */
  uint16_t items;       /* items in this container (2 per map entry) */
  uint16_t pos;         /* items started so far */
  uint8_t is_map;
} level_t;

int idprov_cbor_skip(idprov_cbor_dec_t *d, unsigned depth) {
  level_t lv[IDPROV_CBOR_MAX_DEPTH];
  unsigned top = 0;
  for (;;) {
    idprov_cbor_item_t it;
    const uint8_t *start = d->p;
    level_t *cur = top ? &lv[top - 1] : NULL;
    int rc = idprov_cbor_next(d, &it);
    if (rc) return rc;
    if (cur && cur->is_map && !(cur->pos & 1u)) { /* a map key: an integer or string, not seen before */
      if (it.major > IDPROV_CBOR_TEXT || key_seen(cur->first, d->end, cur->pos / 2u, start, d->p)) return IDPROV_ERR_DECODE;
    }
    if (cur) cur->pos++;
    if (it.major == IDPROV_CBOR_ARRAY || it.major == IDPROV_CBOR_MAP || it.major == IDPROV_CBOR_TAG) {
      uint64_t limit = it.major == IDPROV_CBOR_ARRAY ? IDPROV_CBOR_MAX_ARRAY : it.major == IDPROV_CBOR_MAP ? IDPROV_CBOR_MAX_MAP : 18;
      if (depth + top >= IDPROV_CBOR_MAX_DEPTH || it.arg > limit || (it.major == IDPROV_CBOR_TAG && it.arg != 18))
        return IDPROV_ERR_DECODE;
      if (it.major == IDPROV_CBOR_TAG || it.arg > 0) {
        lv[top].first = d->p;
        lv[top].items = (uint16_t)(it.major == IDPROV_CBOR_TAG ? 1u : it.major == IDPROV_CBOR_MAP ? 2u * it.arg : it.arg);
        lv[top].pos = 0;
        lv[top].is_map = it.major == IDPROV_CBOR_MAP;
        top++;
        continue;
      }
    }
    /* an item is complete: close every container it completes */
    while (top && lv[top - 1].pos == lv[top - 1].items) top--;
    if (!top) return IDPROV_OK;
  }
}

int idprov_cbor_check(const uint8_t *p, size_t n) {
  idprov_cbor_dec_t d;
  int rc;
  if (p == NULL || n == 0 || n > IDPROV_CBOR_MAX_ITEM) return IDPROV_ERR_DECODE;
  idprov_cbor_dec_init(&d, p, n);
  rc = idprov_cbor_skip(&d, 0);
  if (rc) return rc;
  return d.p == d.end ? IDPROV_OK : IDPROV_ERR_DECODE;
}
