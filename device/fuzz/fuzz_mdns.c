/* libFuzzer target: the mDNS response parser (ports/mdns.c) never crashes; strings stay terminated. */
#include "mdns.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  idprov_mdns_result_t r[4];
  size_t n = 0, i;
  (void)idprov_mdns_parse(data, size, "192.0.2.1", r, 4, &n);
  if (n > 4) abort();
  for (i = 0; i < n; i++)
    if (strlen(r[i].instance) >= sizeof r[i].instance || strlen(r[i].address) >= sizeof r[i].address) abort();
  if (n) {
    uint8_t kid[8], fp[32];
    int have = 0;
    (void)idprov_mdns_kid_fp(&r[0], kid, fp, &have);
  }
  return 0;
}
