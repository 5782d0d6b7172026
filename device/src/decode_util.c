/* Small typed readers over a validated CBOR walk (see cbor.c for what "validated" means). */
#include "internal.h"
#include <string.h>

int idprov_rd(idprov_cbor_dec_t *d, uint8_t major, idprov_cbor_item_t *it) {
  IDPROV_TRY(idprov_cbor_next(d, it));
  return it->major == major ? IDPROV_OK : IDPROV_ERR_DECODE;
}

int idprov_rd_key(idprov_cbor_dec_t *d, int32_t *key, idprov_cbor_item_t *it) {
  if (idprov_cbor_next(d, it) != IDPROV_OK) return IDPROV_KEY_OTHER;
  if (it->major == IDPROV_CBOR_UINT && it->arg <= 0x7fffffffu) {
    *key = (int32_t)it->arg;
    return IDPROV_KEY_INT;
  }
  if (it->major == IDPROV_CBOR_NINT && it->arg <= 0x7fffffffu) {
    *key = -1 - (int32_t)it->arg;
    return IDPROV_KEY_INT;
  }
  return it->major == IDPROV_CBOR_TEXT ? IDPROV_KEY_TEXT : IDPROV_KEY_OTHER;
}

int idprov_rd_bstr(idprov_cbor_dec_t *d, size_t lo, size_t hi, idprov_bytes_t *out) {
  idprov_cbor_item_t it;
  IDPROV_TRY(idprov_rd(d, IDPROV_CBOR_BYTES, &it));
  if (it.arg < lo || it.arg > hi) return IDPROV_ERR_DECODE;
  out->ptr = it.ptr;
  out->len = (size_t)it.arg;
  return IDPROV_OK;
}

int idprov_rd_int(idprov_cbor_dec_t *d, int32_t *v) {
  idprov_cbor_item_t it;
  IDPROV_TRY(idprov_cbor_next(d, &it));
  if (it.arg > 0x7fffffffu) return IDPROV_ERR_DECODE;
  if (it.major == IDPROV_CBOR_UINT) *v = (int32_t)it.arg;
  else if (it.major == IDPROV_CBOR_NINT) *v = -1 - (int32_t)it.arg;
  else return IDPROV_ERR_DECODE;
  return IDPROV_OK;
}

int idprov_text_is(const idprov_cbor_item_t *it, const char *s) {
  size_t n = strlen(s);
  return it->major == IDPROV_CBOR_TEXT && it->arg == n && memcmp(it->ptr, s, n) == 0;
}

int idprov_map_open(const uint8_t *p, size_t n, idprov_cbor_dec_t *d, uint64_t *count) {
  idprov_cbor_item_t it;
  IDPROV_TRY(idprov_cbor_check(p, n));
  idprov_cbor_dec_init(d, p, n);
  IDPROV_TRY(idprov_rd(d, IDPROV_CBOR_MAP, &it));
  *count = it.arg;
  return IDPROV_OK;
}
