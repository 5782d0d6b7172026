/*
 * ESP-IDF ports — NOT BUILT IN CI (ESP-IDF is not installed there); kept thin on purpose: storage in
 * NVS (one blob per item, namespace "idprov"; enable NVS encryption, docs/device.md), the clock from
 * esp_timer / gettimeofday / vTaskDelay, randomness from esp_fill_random (the hardware RNG; needs
 * Wi-Fi/BT on or the bootloader entropy source, see ESP-IDF "Random Number Generation").
 */
#ifdef ESP_PLATFORM
#include "idprov_ports.h"
#include "esp_random.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "nvs.h"
#include <sys/time.h>

static const char *const KEYS[] = {"key", "token", "server", "token_meta"};

static int nvs_load(void *u, idprov_item_t item, uint8_t *buf, size_t cap, size_t *len) {
  nvs_handle_t h;
  size_t n = cap;
  esp_err_t e;
  (void)u;
  if (nvs_open("idprov", NVS_READONLY, &h) != ESP_OK) return IDPROV_ERR_NOT_FOUND;
  e = nvs_get_blob(h, KEYS[item], buf, &n);
  nvs_close(h);
  if (e == ESP_ERR_NVS_NOT_FOUND) return IDPROV_ERR_NOT_FOUND;
  if (e != ESP_OK) return IDPROV_ERR_STORAGE;
  *len = n;
  return IDPROV_OK;
}
static int nvs_store(void *u, idprov_item_t item, const uint8_t *buf, size_t len) {
  nvs_handle_t h;
  esp_err_t e;
  (void)u;
  if (nvs_open("idprov", NVS_READWRITE, &h) != ESP_OK) return IDPROV_ERR_STORAGE;
  e = nvs_set_blob(h, KEYS[item], buf, len);
  if (e == ESP_OK) e = nvs_commit(h); /* durable before the library uses the token */
  nvs_close(h);
  return e == ESP_OK ? IDPROV_OK : IDPROV_ERR_STORAGE;
}
static int nvs_erase(void *u, idprov_item_t item) {
  nvs_handle_t h;
  (void)u;
  if (nvs_open("idprov", NVS_READWRITE, &h) != ESP_OK) return IDPROV_ERR_STORAGE;
  (void)nvs_erase_key(h, KEYS[item]);
  nvs_commit(h);
  nvs_close(h);
  return IDPROV_OK;
}
void idprov_storage_nvs(idprov_storage_t *s) {
  s->user = NULL;
  s->load = nvs_load;
  s->store = nvs_store;
  s->erase = nvs_erase;
}

static uint64_t now_ms(void *u) { (void)u; return (uint64_t)esp_timer_get_time() / 1000u; }
static uint64_t epoch_s(void *u) {
  struct timeval tv;
  (void)u;
  gettimeofday(&tv, NULL);
  return tv.tv_sec > 1600000000 ? (uint64_t)tv.tv_sec : 0; /* before SNTP: unknown, ttl is used */
}
static void sleep_ms(void *u, uint32_t ms) { (void)u; vTaskDelay(pdMS_TO_TICKS(ms)); }
void idprov_clock_esp(idprov_clock_t *c) {
  c->user = NULL;
  c->now_ms = now_ms;
  c->epoch_s = epoch_s;
  c->sleep_ms = sleep_ms;
}

static int fill(void *u, uint8_t *b, size_t n) { (void)u; esp_fill_random(b, n); return 0; }
void idprov_random_esp(idprov_random_t *r) {
  r->user = NULL;
  r->fill = fill;
}
#endif
