/* Helpers shared by the decoders (not part of the public API). */
#ifndef IDPROV_INTERNAL_H
#define IDPROV_INTERNAL_H
#include "idprov.h"

/** Steps over an item that idprov_cbor_check already validated. */
void idprov_cbor_fast_skip(idprov_cbor_dec_t *d);

/** Kinds of map keys returned by idprov_rd_key. */
enum { IDPROV_KEY_INT = 0, IDPROV_KEY_TEXT = 1, IDPROV_KEY_OTHER = 2 };

/** Reads the next item and requires major type `major`. */
int idprov_rd(idprov_cbor_dec_t *d, uint8_t major, idprov_cbor_item_t *it);
/** Reads a map key: an integer in int32 range (into *key), a text key (in *it), or another key. */
int idprov_rd_key(idprov_cbor_dec_t *d, int32_t *key, idprov_cbor_item_t *it);
/** Reads a byte string of length lo..hi into *out. */
int idprov_rd_bstr(idprov_cbor_dec_t *d, size_t lo, size_t hi, idprov_bytes_t *out);
/** Reads an integer (uint or nint) in int32 range. */
int idprov_rd_int(idprov_cbor_dec_t *d, int32_t *v);
/** True when the text item equals the NUL-terminated string s. */
int idprov_text_is(const idprov_cbor_item_t *it, const char *s);

/** The two ends of a decoder walk over a validated top-level map: returns its entry count. */
int idprov_map_open(const uint8_t *p, size_t n, idprov_cbor_dec_t *d, uint64_t *count);

#define IDPROV_TRY(x) do { int rc_ = (x); if (rc_ != IDPROV_OK) return rc_; } while (0)
#endif
