/* DTLS 1.2 PSK transport through mbedTLS 2.28 (host and ESP-IDF): a connected idprov_dgram_t. */
#ifndef IDPROV_PORT_DTLS_H
#define IDPROV_PORT_DTLS_H
#include "idprov.h"
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/timing.h>

/** Everything mbedTLS needs for one session (caller-owned; ~ 1.5 KB plus mbedTLS's own buffers). */
typedef struct {
  mbedtls_net_context net;
  mbedtls_ssl_context ssl;
  mbedtls_ssl_config conf;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_timing_delay_context timer;
  int suites[3];
  int open;
  uint32_t datagrams_out, datagrams_in, bytes_out, bytes_in; /**< on the wire, handshake included */
} idprov_dtls_t;

/**
 * Connects to host:port over UDP and completes a DTLS 1.2 handshake with PSK identity = `identity`
 * (the device ID, docs/dtls.md) and key = the out-of-band secret's bytes; suites
 * TLS_PSK_WITH_AES_128_CCM_8, then TLS_PSK_WITH_AES_128_GCM_SHA256. handshake_ms bounds the handshake.
 */
int idprov_dtls_open(idprov_dtls_t *t, const char *host, uint16_t port, const char *identity, const uint8_t *psk,
                     size_t psk_len, uint32_t handshake_ms, idprov_dgram_t *out);
/** Sends close_notify and frees the session. */
void idprov_dtls_close(idprov_dtls_t *t);
#endif
