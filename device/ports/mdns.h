/* A minimal mDNS browser for _idprov._udp.local (RFC 6762/6763) on BSD sockets (host port). */
#ifndef IDPROV_MDNS_H
#define IDPROV_MDNS_H
#include <stddef.h>
#include <stdint.h>

/** One advertised server: SRV port and target address, TXT v/kid/fp/coaps. */
typedef struct {
  char instance[64];
  char address[64];   /**< A record of the SRV target, else the answer's source address */
  uint16_t port;
  uint16_t coaps_port;
  char kid[17];       /**< hex, from TXT kid= */
  char fp[48];        /**< base64url, from TXT fp= */
} idprov_mdns_result_t;

/** Sends one PTR query (from iface_addr, an IPv4 address; NULL = the default) and collects answers for timeout_ms. */
int idprov_mdns_discover(idprov_mdns_result_t *out, size_t cap, size_t *count, uint32_t timeout_ms, const char *iface_addr);
/** Decodes TXT kid= (16 hex) and fp= (43 base64url) into bytes; returns 0 when both parse. */
int idprov_mdns_kid_fp(const idprov_mdns_result_t *r, uint8_t kid[8], uint8_t fp[32], int *have_fp);
/** Parses one mDNS response datagram into results (exported for the tests and the fuzzer). */
int idprov_mdns_parse(const uint8_t *p, size_t n, const char *from, idprov_mdns_result_t *out, size_t cap, size_t *count);
#endif
