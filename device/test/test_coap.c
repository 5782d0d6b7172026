/* The CoAP client over a scripted datagram peer and a fake clock: CON retransmission timing
   (RFC 7252 §4.2), piggybacked and separate responses, RST, Block2 reassembly (RFC 7959). */
#include "idprov.h"
#include "fakes.h"
#include "tiny_test.h"
#include "mdns.h"

/* A scripted server: `drop` requests are lost, then it answers according to `mode`. */
enum { PIGGY, SEPARATE, RESET, BLOCKS, WRONG_TOKEN_FIRST, SILENT };
typedef struct {
  fake_clock_t *clk;
  int mode, drop;
  unsigned sends;
  uint64_t send_at[16];
  uint8_t queue[4][1200];
  size_t qlen[4];
  unsigned qn;
  idprov_coap_msg_t last;       /* the last request */
  uint8_t last_raw[1200];
  unsigned acks_seen;
  uint8_t body[100];
} peer_t;

static void enqueue(peer_t *p, const uint8_t *b, size_t n) {
  if (p->qn < 4) { memcpy(p->queue[p->qn], b, n); p->qlen[p->qn++] = n; }
}
static void reply(peer_t *p, uint8_t type, uint8_t code, uint16_t mid, const uint8_t *tok, const uint8_t *pl, size_t n, int64_t block2) {
  uint8_t b[1200];
  int len = idprov_coap_build(b, sizeof b, type, code, mid, tok, 4, NULL, 60, block2, pl, n);
  if (len > 0) enqueue(p, b, (size_t)len);
}
static int p_send(void *u, const uint8_t *b, size_t n) {
  peer_t *p = (peer_t *)u;
  idprov_coap_msg_t m;
  if (idprov_coap_parse(b, n, &m)) return -1;
  if (m.type == 2) { p->acks_seen++; return 0; }
  if (p->sends < 16) p->send_at[p->sends] = p->clk->ms;
  p->sends++;
  p->last = m;
  memcpy(p->last_raw, b, n);
  p->last.payload = p->last_raw + (m.payload - b);
  if (p->drop > 0) { p->drop--; return 0; }
  switch (p->mode) {
  case PIGGY: reply(p, 2, IDPROV_COAP_CODE(2, 5), m.mid, m.token, p->body, 3, -1); break;
  case SEPARATE: {
    uint8_t ack[4] = {0x60, 0, (uint8_t)(m.mid >> 8), (uint8_t)m.mid};
    enqueue(p, ack, 4);
    reply(p, 0, IDPROV_COAP_CODE(2, 1), 0x7777, m.token, p->body, 3, -1);
    break;
  }
  case RESET: {
    uint8_t rst[4] = {0x70, 0, (uint8_t)(m.mid >> 8), (uint8_t)m.mid};
    enqueue(p, rst, 4);
    break;
  }
  case WRONG_TOKEN_FIRST: {
    uint8_t t[4] = {9, 9, 9, 9};
    reply(p, 0, IDPROV_COAP_CODE(2, 5), 0x1111, t, p->body, 1, -1);
    reply(p, 2, IDPROV_COAP_CODE(2, 5), (uint16_t)(m.mid + 1), m.token, p->body, 1, -1); /* other mid */
    reply(p, 2, IDPROV_COAP_CODE(2, 5), m.mid, m.token, p->body, 2, -1);
    break;
  }
  case BLOCKS: { /* 40 bytes in 16-byte blocks: 16 + 16 + 8 */
    uint32_t num = m.has_block2 ? m.block2 >> 4 : 0, off = num * 16, n2 = off + 16 <= 40 ? 16 : 40 - off;
    reply(p, 2, IDPROV_COAP_CODE(2, 5), m.mid, m.token, p->body + off, n2, (int64_t)((num << 4) | (off + 16 < 40 ? 8 : 0) | 0));
    break;
  }
  default: break;
  }
  return 0;
}
static int p_recv(void *u, uint8_t *b, size_t cap, uint32_t timeout_ms) {
  peer_t *p = (peer_t *)u;
  unsigned i;
  size_t n;
  if (!p->qn) { p->clk->ms += timeout_ms; return IDPROV_ERR_TIMEOUT; }
  n = p->qlen[0] < cap ? p->qlen[0] : cap;
  memcpy(b, p->queue[0], n);
  for (i = 1; i < p->qn; i++) { memcpy(p->queue[i - 1], p->queue[i], p->qlen[i]); p->qlen[i - 1] = p->qlen[i]; }
  p->qn--;
  return (int)n;
}

static fake_clock_t clk;
static peer_t peer;
static idprov_coap_client_t cl;
static uint8_t io[2400], rbuf[256];

static void setup(int mode, int drop) {
  idprov_dgram_t d;
  idprov_random_t r;
  idprov_clock_t k;
  unsigned i;
  memset(&clk, 0, sizeof clk);
  memset(&peer, 0, sizeof peer);
  peer.clk = &clk;
  peer.mode = mode;
  peer.drop = drop;
  for (i = 0; i < sizeof peer.body; i++) peer.body[i] = (uint8_t)i;
  d.user = &peer;
  d.send = p_send;
  d.recv = p_recv;
  fake_random(&r);
  fake_clock(&k, &clk);
  idprov_coap_client_init(&cl, &d, &r, &k, io, sizeof io);
}
static int post(idprov_coap_resp_t *resp) {
  static const uint8_t pl[3] = {0x84, 0x40, 0xa0};
  idprov_coap_req_t q;
  q.method = IDPROV_COAP_POST;
  q.path = "/idprov/request";
  q.content_format = 18;
  q.payload = pl;
  q.payload_len = 3;
  resp->buf = rbuf;
  resp->cap = sizeof rbuf;
  return idprov_coap_exchange(&cl, &q, resp);
}

TEST(a_piggybacked_response_ends_the_exchange) {
  idprov_coap_resp_t r;
  setup(PIGGY, 0);
  CHECK_EQ(post(&r), 0);
  CHECK_EQ(r.code, IDPROV_COAP_CODE(2, 5));
  CHECK_EQ(r.len, 3);
  CHECK_EQ(r.content_format, 60);
  CHECK_EQ(peer.sends, 1);
  CHECK_EQ(peer.last.type, 0); /* CON */
  CHECK_EQ(peer.last.content_format, 18);
  CHECK_EQ(peer.last.tkl, 4);
  CHECK_EQ(cl.retransmissions, 0);
}
TEST(lost_requests_are_retransmitted_with_doubling_randomised_timeouts) {
  idprov_coap_resp_t r;
  unsigned i;
  uint64_t first;
  setup(PIGGY, 3);
  CHECK_EQ(post(&r), 0);
  CHECK_EQ(peer.sends, 4);
  CHECK_EQ(cl.retransmissions, 3);
  first = peer.send_at[1] - peer.send_at[0];
  CHECK(first >= 2000 && first <= 3000); /* ACK_TIMEOUT .. ACK_TIMEOUT * ACK_RANDOM_FACTOR */
  for (i = 2; i < 4; i++) CHECK_EQ(peer.send_at[i] - peer.send_at[i - 1], first << (i - 1));
  /* the same message ID on every retransmission */
}
TEST(the_client_gives_up_after_max_retransmit) {
  idprov_coap_resp_t r;
  uint64_t first;
  setup(SILENT, 0);
  CHECK_EQ(post(&r), IDPROV_ERR_TIMEOUT);
  CHECK_EQ(peer.sends, 5); /* 1 + MAX_RETRANSMIT (4) */
  first = peer.send_at[1] - peer.send_at[0];
  CHECK_EQ(clk.ms, first * 31); /* 1 + 2 + 4 + 8 + 16 timeouts: MAX_TRANSMIT_WAIT-shaped */
}
TEST(an_empty_ack_then_a_separate_con_response_is_acknowledged) {
  idprov_coap_resp_t r;
  setup(SEPARATE, 0);
  CHECK_EQ(post(&r), 0);
  CHECK_EQ(r.code, IDPROV_COAP_CODE(2, 1));
  CHECK_EQ(peer.acks_seen, 1);
  CHECK_EQ(peer.sends, 1);
}
TEST(a_reset_fails_the_exchange) {
  idprov_coap_resp_t r;
  setup(RESET, 0);
  CHECK_EQ(post(&r), IDPROV_ERR_PROTOCOL);
}
TEST(responses_with_another_token_or_message_id_are_ignored) {
  idprov_coap_resp_t r;
  setup(WRONG_TOKEN_FIRST, 0);
  CHECK_EQ(post(&r), 0);
  CHECK_EQ(r.len, 2);
}
TEST(block2_responses_are_reassembled_into_the_caller_buffer) {
  idprov_coap_resp_t r;
  idprov_coap_req_t q;
  setup(BLOCKS, 0);
  cl.params.block2_szx = 0;
  q.method = IDPROV_COAP_GET;
  q.path = "/idprov/keys";
  q.content_format = -1;
  q.payload = NULL;
  q.payload_len = 0;
  r.buf = rbuf;
  r.cap = sizeof rbuf;
  CHECK_EQ(idprov_coap_exchange(&cl, &q, &r), 0);
  CHECK_EQ(r.len, 40);
  CHECK_MEM(rbuf, peer.body, 40);
  CHECK_EQ(peer.sends, 3);
  CHECK_EQ(peer.last.block2, (2u << 4) | 0);
  r.cap = 20;
  CHECK_EQ(idprov_coap_exchange(&cl, &q, &r), IDPROV_ERR_BUFFER);
}

static size_t put_name(uint8_t *b, const char *n) {
  size_t o = 0;
  while (*n) {
    const char *d = strchr(n, '.');
    size_t l = d ? (size_t)(d - n) : strlen(n);
    b[o++] = (uint8_t)l;
    memcpy(b + o, n, l);
    o += l;
    n += l + (d ? 1 : 0);
  }
  b[o++] = 0;
  return o;
}
static size_t put_rr(uint8_t *b, const char *name, uint8_t type, const uint8_t *data, size_t n) {
  size_t o = put_name(b, name);
  uint8_t h[10] = {0, type, 0x80, 1, 0, 0, 0, 120, 0, (uint8_t)n};
  memcpy(b + o, h, 10);
  memcpy(b + o + 10, data, n);
  return o + 10 + n;
}
TEST(an_mdns_answer_gives_instance_port_txt_and_address) {
  uint8_t m[512], rd[128];
  size_t o = 12, n, count = 0;
  idprov_mdns_result_t r[2];
  static const char txt[] = "\003v=1\024kid=bbc3f7d0c18ed599\006fp=abc\012coaps=5684";
  memset(m, 0, 12);
  m[2] = 0x84;
  m[7] = 4;
  n = put_name(rd, "idprov-x._idprov._udp.local");
  o += put_rr(m + o, "_idprov._udp.local", 12, rd, n);
  rd[0] = rd[1] = rd[2] = rd[3] = 0; rd[4] = 0x16; rd[5] = 0x33;
  n = 6 + put_name(rd + 6, "h.local");
  o += put_rr(m + o, "idprov-x._idprov._udp.local", 33, rd, n);
  o += put_rr(m + o, "idprov-x._idprov._udp.local", 16, (const uint8_t *)txt, sizeof txt - 1);
  rd[0] = 192; rd[1] = 0; rd[2] = 2; rd[3] = 7;
  o += put_rr(m + o, "h.local", 1, rd, 4);
  CHECK_EQ(idprov_mdns_parse(m, o, "10.0.0.1", r, 2, &count), 0);
  CHECK_EQ(count, 1);
  CHECK(strcmp(r[0].instance, "idprov-x") == 0);
  CHECK_EQ(r[0].port, 5683);
  CHECK_EQ(r[0].coaps_port, 5684);
  CHECK(strcmp(r[0].kid, "bbc3f7d0c18ed599") == 0);
  CHECK(strcmp(r[0].fp, "abc") == 0);
  CHECK(strcmp(r[0].address, "192.0.2.7") == 0);
  m[o - 1 - 4 - 10 - 3] = 0xc0; /* break the A record's name into a pointer loop: refused, no crash */
  count = 0;
  (void)idprov_mdns_parse(m, o, NULL, r, 2, &count);
  CHECK(count <= 2);
}

static const tt_test_t TESTS[] = {
  T(an_mdns_answer_gives_instance_port_txt_and_address),
  T(a_piggybacked_response_ends_the_exchange), T(lost_requests_are_retransmitted_with_doubling_randomised_timeouts),
  T(the_client_gives_up_after_max_retransmit), T(an_empty_ack_then_a_separate_con_response_is_acknowledged),
  T(a_reset_fails_the_exchange), T(responses_with_another_token_or_message_id_are_ignored),
  T(block2_responses_are_reassembled_into_the_caller_buffer),
};
int main(int argc, char **argv) { return tt_main(argc, argv, TESTS, sizeof TESTS / sizeof TESTS[0]); }
