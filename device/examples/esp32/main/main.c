/*
 * ESP32 example — NOT BUILT IN CI (needs ESP-IDF). Thin glue only: every decision is made by the
 * library (device/src, built and tested on the host and on qemu-system-riscv32).
 *
 *   Wi-Fi up → mDNS browse _idprov._udp → remember kid/fp (report a change) → idprov_provision()
 *   (key and token in NVS) → sleep until half the token's life → idprov_refresh() → ...
 */
#include <stdio.h>
#include <string.h>
#include "esp_event.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_netif.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "mdns.h"
#include "nvs_flash.h"
#include "idprov.h"
#include "idprov_ports.h"

static const char *TAG = "idprov";
static EventGroupHandle_t s_net;

static void on_event(void *arg, esp_event_base_t base, int32_t id, void *data) {
  (void)arg; (void)data;
  if (base == WIFI_EVENT && (id == WIFI_EVENT_STA_START || id == WIFI_EVENT_STA_DISCONNECTED)) esp_wifi_connect();
  if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) xEventGroupSetBits(s_net, 1);
}

static void wifi_up(void) {
  wifi_init_config_t cfg = WIFI_INIT_CONFIG_DEFAULT();
  wifi_config_t wc = {0};
  s_net = xEventGroupCreate();
  ESP_ERROR_CHECK(esp_netif_init());
  ESP_ERROR_CHECK(esp_event_loop_create_default());
  esp_netif_create_default_wifi_sta();
  ESP_ERROR_CHECK(esp_wifi_init(&cfg));
  ESP_ERROR_CHECK(esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, on_event, NULL));
  ESP_ERROR_CHECK(esp_event_handler_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_event, NULL));
  strncpy((char *)wc.sta.ssid, CONFIG_EXAMPLE_WIFI_SSID, sizeof wc.sta.ssid);
  strncpy((char *)wc.sta.password, CONFIG_EXAMPLE_WIFI_PASSWORD, sizeof wc.sta.password);
  ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
  ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &wc));
  ESP_ERROR_CHECK(esp_wifi_start());
  xEventGroupWaitBits(s_net, 1, pdFALSE, pdTRUE, portMAX_DELAY);
}

/* mDNS browse through ESP-IDF's mdns component; fills host/port and tells the library kid/fp. */
static int discover(idprov_ctx_t *ctx, char *host, size_t cap, uint16_t *port) {
  mdns_result_t *res = NULL;
  if (mdns_init() != ESP_OK || mdns_query_ptr("_idprov", "_udp", 3000, 4, &res) != ESP_OK || !res) return -1;
  for (mdns_result_t *r = res; r; r = r->next) {
    if (!r->addr) continue;
    snprintf(host, cap, IPSTR, IP2STR(&r->addr->addr.u_addr.ip4));
    *port = r->port;
    for (size_t i = 0; i < r->txt_count; i++) {
      if (strcmp(r->txt[i].key, "kid") == 0 && r->txt[i].value && strlen(r->txt[i].value) == 16) {
        uint8_t kid[8];
        for (int j = 0; j < 8; j++) sscanf(r->txt[i].value + 2 * j, "%2hhx", &kid[j]);
        idprov_server_seen(ctx, kid, NULL);
        if (ctx->events & IDPROV_EV_KID_CHANGED) ESP_LOGW(TAG, "the server's token key changed since last boot");
      }
    }
    mdns_query_results_free(res);
    return 0;
  }
  mdns_query_results_free(res);
  return -1;
}

void app_main(void) {
  static idprov_ctx_t ctx;                       /* ~1.3 KB: static, not on the task stack */
  static uint8_t tx[1200], rx[1100], io[2600];
  static idprov_coap_client_t coap;
  static idprov_udp_t udp;
  static char id[IDPROV_ID_MAX + 1];
  char host[64] = "", uri_host[64];
  uint16_t port = 5683;
  int secure = 0;
  idprov_dgram_t dg;
  uint8_t mac[6];
  esp_err_t e = nvs_flash_init();
  if (e == ESP_ERR_NVS_NO_FREE_PAGES || e == ESP_ERR_NVS_NEW_VERSION_FOUND) {
    ESP_ERROR_CHECK(nvs_flash_erase());
    e = nvs_flash_init();
  }
  ESP_ERROR_CHECK(e);
  wifi_up();

  esp_read_mac(mac, ESP_MAC_WIFI_STA);
  if (strlen(CONFIG_IDPROV_DEVICE_ID)) snprintf(id, sizeof id, "%s", CONFIG_IDPROV_DEVICE_ID);
  else snprintf(id, sizeof id, "idprov-%02x%02x%02x%02x%02x%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  ctx.cfg.id = id;
  ctx.cfg.mac = mac;
  ctx.cfg.mac_len = 6;
  if (strlen(CONFIG_IDPROV_OOB_SECRET)) {
    ctx.cfg.oob_secret = (const uint8_t *)CONFIG_IDPROV_OOB_SECRET;
    ctx.cfg.oob_secret_len = strlen(CONFIG_IDPROV_OOB_SECRET);
  }
#ifdef CONFIG_IDPROV_SEAL
  ctx.cfg.seal = 1;
#endif
#ifdef CONFIG_IDPROV_VERIFY_TOKEN
  ctx.cfg.verify_token = 1;
#endif
  idprov_crypto_sodium(&ctx.crypto);
  idprov_random_esp(&ctx.random);
  idprov_clock_esp(&ctx.clock);
  idprov_storage_nvs(&ctx.storage);
  ctx.tx = tx; ctx.tx_cap = sizeof tx;
  ctx.rx = rx; ctx.rx_cap = sizeof rx;
  /* the transport is set below; idprov_init needs one to be present */
  ctx.transport.exchange = idprov_coap_exchange;
  ctx.transport.user = &coap;
  ESP_ERROR_CHECK(idprov_init(&ctx, 1) == IDPROV_OK ? ESP_OK : ESP_FAIL); /* makes the key on first boot */
  {
    char fp[IDPROV_FINGERPRINT_SIZE];
    idprov_fingerprint(&ctx.crypto, ctx.pk, fp);
    ESP_LOGI(TAG, "device %s, key %s", id, fp); /* what the admin compares before approving */
  }

  if (discover(&ctx, host, sizeof host, &port) != 0) {
    idprov_parse_uri(CONFIG_IDPROV_SERVER_URI, uri_host, sizeof uri_host, &port, &secure);
    snprintf(host, sizeof host, "%s", uri_host);
  }
  ESP_ERROR_CHECK(idprov_udp_open(&udp, host, port, &dg) == IDPROV_OK ? ESP_OK : ESP_FAIL);
  idprov_coap_client_init(&coap, &dg, &ctx.random, &ctx.clock, io, sizeof io);
  coap.params.ack_timeout_ms = CONFIG_IDPROV_ACK_TIMEOUT_MS;

  for (;;) {
    int rc = ctx.state == IDPROV_ST_PROVISIONED ? idprov_refresh(&ctx) : idprov_provision(&ctx, CONFIG_IDPROV_MAX_WAIT_S ? CONFIG_IDPROV_MAX_WAIT_S : 0xffffffffu);
    if (rc == IDPROV_OK) {
      uint64_t in = idprov_refresh_in_s(&ctx);
      ESP_LOGI(TAG, "token %u bytes, refresh in %llu s", (unsigned)ctx.token_len, (unsigned long long)in);
      /* hand ctx.token to the Hub client here; deep sleep is fine: the token is in NVS */
      ctx.clock.sleep_ms(NULL, (uint32_t)(in > 86400 ? 86400 : in) * 1000u);
    } else {
      ESP_LOGW(TAG, "%s (CoAP %d.%02d); waiting %u s", idprov_err_name(rc), ctx.last_code >> 5, ctx.last_code & 31, (unsigned)ctx.wait_s);
      ctx.clock.sleep_ms(NULL, (ctx.wait_s ? ctx.wait_s : 30) * 1000u); /* never faster than the server says */
    }
  }
}
