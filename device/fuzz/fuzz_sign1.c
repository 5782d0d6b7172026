/* libFuzzer target: the sign1 decoder never crashes, and what it returns points inside the input. */
#include "idprov.h"
#include <stdlib.h>

static void in(const uint8_t *p, size_t n, const uint8_t *base, size_t size) {
  if (n && (p < base || p + n > base + size)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  idprov_sign1_t s; if (idprov_sign1_parse(data, size, &s) == 0) { in(s.payload.ptr, s.payload.len, data, size); in(s.protected_hdr.ptr, s.protected_hdr.len, data, size); in(s.signature.ptr, s.signature.len, data, size); }
  (void)in;
  return 0;
}
