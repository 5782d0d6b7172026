/*
 * DTLS 1.2 PSK through mbedTLS 2.28 (the ESP-IDF line): the session is an idprov_dgram_t, so the same
 * CoAP client (coap.c) runs over it. PSK identity = the device ID, key = the out-of-band secret
 * (docs/dtls.md); the server then counts the session as proof of the secret, so no key 7 is sent.
 */
#include "port_dtls.h"
#include <stdio.h>
#include <string.h>

static int dtls_send(void *user, const uint8_t *buf, size_t len) {
  idprov_dtls_t *t = (idprov_dtls_t *)user;
  int ret;
  do ret = mbedtls_ssl_write(&t->ssl, buf, len);
  while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
  return ret == (int)len ? 0 : IDPROV_ERR_TRANSPORT;
}

static int dtls_recv(void *user, uint8_t *buf, size_t cap, uint32_t timeout_ms) {
  idprov_dtls_t *t = (idprov_dtls_t *)user;
  int ret;
  mbedtls_ssl_conf_read_timeout(&t->conf, timeout_ms ? timeout_ms : 1);
  do ret = mbedtls_ssl_read(&t->ssl, buf, cap);
  while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
  if (ret == MBEDTLS_ERR_SSL_TIMEOUT) return IDPROV_ERR_TIMEOUT;
  if (ret <= 0) return IDPROV_ERR_TRANSPORT; /* 0 / PEER_CLOSE_NOTIFY: the session is gone */
  return ret;
}

/* The socket under mbedTLS, counted (bytes on the air per flow, docs/device.md). */
static int bio_send(void *ctx, const unsigned char *buf, size_t len) {
  idprov_dtls_t *t = (idprov_dtls_t *)ctx;
  int n = mbedtls_net_send(&t->net, buf, len);
  if (n > 0) { t->datagrams_out++; t->bytes_out += (uint32_t)n; }
  return n;
}
static int bio_recv_timeout(void *ctx, unsigned char *buf, size_t len, uint32_t timeout) {
  idprov_dtls_t *t = (idprov_dtls_t *)ctx;
  int n = mbedtls_net_recv_timeout(&t->net, buf, len, timeout);
  if (n > 0) { t->datagrams_in++; t->bytes_in += (uint32_t)n; }
  return n;
}

int idprov_dtls_open(idprov_dtls_t *t, const char *host, uint16_t port, const char *identity, const uint8_t *psk,
                     size_t psk_len, uint32_t handshake_ms, idprov_dgram_t *out) {
  char ps[8];
  int ret;
  memset(t, 0, sizeof *t);
  mbedtls_net_init(&t->net);
  mbedtls_ssl_init(&t->ssl);
  mbedtls_ssl_config_init(&t->conf);
  mbedtls_entropy_init(&t->entropy);
  mbedtls_ctr_drbg_init(&t->drbg);
  t->open = 1;
  t->suites[0] = MBEDTLS_TLS_PSK_WITH_AES_128_CCM_8;
  t->suites[1] = MBEDTLS_TLS_PSK_WITH_AES_128_GCM_SHA256;
  t->suites[2] = 0;
  snprintf(ps, sizeof ps, "%u", (unsigned)port);
  if (mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->entropy, (const unsigned char *)"idprov-dtls", 11) ||
      mbedtls_net_connect(&t->net, host, ps, MBEDTLS_NET_PROTO_UDP) ||
      mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_DATAGRAM, MBEDTLS_SSL_PRESET_DEFAULT))
    goto fail;
  mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);
  mbedtls_ssl_conf_ciphersuites(&t->conf, t->suites);
  mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  /* RFC 6347 §4.2.4: 1 s initial, doubling; the whole handshake bounded by handshake_ms */
  mbedtls_ssl_conf_handshake_timeout(&t->conf, 1000, handshake_ms < 2000 ? 2000 : handshake_ms);
  if (mbedtls_ssl_conf_psk(&t->conf, psk, psk_len, (const unsigned char *)identity, strlen(identity)) ||
      mbedtls_ssl_setup(&t->ssl, &t->conf))
    goto fail;
  mbedtls_ssl_set_bio(&t->ssl, t, bio_send, NULL, bio_recv_timeout);
  mbedtls_ssl_set_timer_cb(&t->ssl, &t->timer, mbedtls_timing_set_delay, mbedtls_timing_get_delay);
  do ret = mbedtls_ssl_handshake(&t->ssl);
  while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
  if (ret != 0) goto fail;
  out->user = t;
  out->send = dtls_send;
  out->recv = dtls_recv;
  return IDPROV_OK;
fail:
  idprov_dtls_close(t);
  return IDPROV_ERR_TRANSPORT;
}

void idprov_dtls_close(idprov_dtls_t *t) {
  if (!t->open) return;
  if (t->ssl.state == MBEDTLS_SSL_HANDSHAKE_OVER) (void)mbedtls_ssl_close_notify(&t->ssl);
  mbedtls_net_free(&t->net);
  mbedtls_ssl_free(&t->ssl);
  mbedtls_ssl_config_free(&t->conf);
  mbedtls_ctr_drbg_free(&t->drbg);
  mbedtls_entropy_free(&t->entropy);
  t->open = 0;
}
