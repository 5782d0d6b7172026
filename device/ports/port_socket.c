/*
 * A connected UDP socket for the CoAP client, written for the BSD-socket subset lwIP offers on
 * ESP-IDF (socket, connect, send, recv, select, getaddrinfo), so this file serves host and chip.
 */
#define _POSIX_C_SOURCE 200809L
#include "idprov_ports.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef ESP_PLATFORM
#include "lwip/netdb.h"
#include "lwip/sockets.h"
#else
#include <netdb.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#endif

static int udp_send(void *user, const uint8_t *buf, size_t len) {
  idprov_udp_t *u = (idprov_udp_t *)user;
  return send(u->fd, buf, len, 0) == (ssize_t)len ? 0 : IDPROV_ERR_TRANSPORT;
}

static int udp_recv(void *user, uint8_t *buf, size_t cap, uint32_t timeout_ms) {
  idprov_udp_t *u = (idprov_udp_t *)user;
  fd_set rd;
  struct timeval tv;
  ssize_t n;
  int rc;
  FD_ZERO(&rd);
  FD_SET(u->fd, &rd);
  tv.tv_sec = (long)(timeout_ms / 1000u);
  tv.tv_usec = (long)(timeout_ms % 1000u) * 1000L;
  rc = select(u->fd + 1, &rd, NULL, NULL, &tv);
  if (rc == 0) return IDPROV_ERR_TIMEOUT;
  if (rc < 0) return errno == EINTR ? IDPROV_ERR_TIMEOUT : IDPROV_ERR_TRANSPORT;
  n = recv(u->fd, buf, cap, 0);
  if (n < 0) {
    /* ICMP port unreachable (server down) shows as ECONNREFUSED on a connected socket: keep waiting,
       the CON retransmission reaches the server once it is back */
    return errno == ECONNREFUSED || errno == EAGAIN || errno == EINTR ? IDPROV_ERR_TIMEOUT : IDPROV_ERR_TRANSPORT;
  }
  return (int)n;
}

int idprov_udp_open(idprov_udp_t *u, const char *host, uint16_t port, idprov_dgram_t *out) {
  struct addrinfo hints, *res = NULL, *ai;
  char ps[8];
  u->fd = -1;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  snprintf(ps, sizeof ps, "%u", (unsigned)port);
  if (getaddrinfo(host, ps, &hints, &res) != 0) return IDPROV_ERR_ARG;
  for (ai = res; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      u->fd = fd;
      break;
    }
    close(fd);
  }
  freeaddrinfo(res);
  if (u->fd < 0) return IDPROV_ERR_TRANSPORT;
  out->user = u;
  out->send = udp_send;
  out->recv = udp_recv;
  return IDPROV_OK;
}

void idprov_udp_close(idprov_udp_t *u) {
  if (u->fd >= 0) close(u->fd);
  u->fd = -1;
}

int idprov_parse_uri(const char *uri, char *host, size_t host_cap, uint16_t *port, int *secure) {
  const char *p, *h, *e;
  size_t hl;
  if (strncmp(uri, "coap://", 7) == 0) { *secure = 0; p = uri + 7; *port = 5683; }
  else if (strncmp(uri, "coaps://", 8) == 0) { *secure = 1; p = uri + 8; *port = 5684; }
  else return IDPROV_ERR_ARG;
  if (*p == '[') {
    h = p + 1;
    e = strchr(h, ']');
    if (!e) return IDPROV_ERR_ARG;
    p = e + 1;
  } else {
    h = p;
    e = p + strcspn(p, ":/");
    p = e;
  }
  hl = (size_t)(e - h);
  if (hl == 0 || hl >= host_cap) return IDPROV_ERR_ARG;
  memcpy(host, h, hl);
  host[hl] = 0;
  if (*p == ':') {
    char *end;
    long v = strtol(p + 1, &end, 10);
    if (v <= 0 || v > 65535 || (*end && *end != '/')) return IDPROV_ERR_ARG;
    *port = (uint16_t)v;
  } else if (*p && *p != '/') {
    return IDPROV_ERR_ARG;
  }
  return IDPROV_OK;
}
