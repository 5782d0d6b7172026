/* Test doubles: a clock whose time only moves when the code under test waits, in-memory storage. */
#ifndef IDPROV_FAKES_H
#define IDPROV_FAKES_H
#include "idprov.h"
#include <string.h>

typedef struct { uint64_t ms; uint64_t epoch; uint64_t slept_ms; unsigned sleeps; } fake_clock_t;
static inline uint64_t fc_now(void *u) { return ((fake_clock_t *)u)->ms; }
static inline uint64_t fc_epoch(void *u) { fake_clock_t *c = (fake_clock_t *)u; return c->epoch ? c->epoch + c->ms / 1000u : 0; }
static inline void fc_sleep(void *u, uint32_t ms) { fake_clock_t *c = (fake_clock_t *)u; c->ms += ms; c->slept_ms += ms; c->sleeps++; }
static inline void fake_clock(idprov_clock_t *k, fake_clock_t *c) { k->user = c; k->now_ms = fc_now; k->epoch_s = fc_epoch; k->sleep_ms = fc_sleep; }

typedef struct { uint8_t data[4][600]; size_t len[4]; int present[4]; unsigned stores, erases; } fake_storage_t;
static inline int fs_load(void *u, idprov_item_t i, uint8_t *b, size_t cap, size_t *len) {
  fake_storage_t *s = (fake_storage_t *)u;
  if (!s->present[i]) return IDPROV_ERR_NOT_FOUND;
  if (s->len[i] > cap) return IDPROV_ERR_BUFFER;
  memcpy(b, s->data[i], s->len[i]);
  *len = s->len[i];
  return 0;
}
static inline int fs_store(void *u, idprov_item_t i, const uint8_t *b, size_t len) {
  fake_storage_t *s = (fake_storage_t *)u;
  if (len > sizeof s->data[i]) return IDPROV_ERR_STORAGE;
  memcpy(s->data[i], b, len);
  s->len[i] = len;
  s->present[i] = 1;
  s->stores++;
  return 0;
}
static inline int fs_erase(void *u, idprov_item_t i) { fake_storage_t *s = (fake_storage_t *)u; s->present[i] = 0; s->erases++; return 0; }
static inline void fake_storage(idprov_storage_t *k, fake_storage_t *s) { k->user = s; k->load = fs_load; k->store = fs_store; k->erase = fs_erase; }

static uint32_t fr_state = 12345;
static inline int fr_fill(void *u, uint8_t *b, size_t n) { (void)u; while (n--) { fr_state = fr_state * 1103515245u + 12345u; *b++ = (uint8_t)(fr_state >> 16); } return 0; }
static inline void fake_random(idprov_random_t *r) { r->user = NULL; r->fill = fr_fill; }
#endif
