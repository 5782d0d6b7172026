/* libFuzzer target: the response decoder never crashes, and what it returns points inside the input. */
#include "idprov.h"
#include <stdlib.h>

static void in(const uint8_t *p, size_t n, const uint8_t *base, size_t size) {
  if (n && (p < base || p + n > base + size)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  idprov_response_t r; if (idprov_response_parse(data, size, &r) == 0) { in(r.token.ptr, r.token.len, data, size); in(r.box.ptr, r.box.len, data, size); in(r.diag.ptr, r.diag.len, data, size); }
  (void)in;
  return 0;
}
