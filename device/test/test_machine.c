/* The state machine against a scripted server (fake transport), with the libsodium crypto port and
   the shared vectors: challenge, pending with retry hint, back-off, disabled, refusals, sealed and
   verified tokens, refresh, token drop, kid change, the blocking idprov_provision(). */
#include "idprov.h"
#include "idprov_ports.h"
#include "fixtures.h"
#include "fakes.h"
#include "internal.h"
#include "tiny_test.h"

typedef struct { uint8_t code; uint8_t body[600]; size_t len; uint32_t max_age; } step_t;
static step_t script[16];
static unsigned nscript, served;
static uint8_t reqs[16][1100];
static size_t reqlen[16];
static const char *reqpath[16];

static int fx_exchange(void *u, const idprov_coap_req_t *q, idprov_coap_resp_t *r) {
  (void)u;
  if (served < 16) {
    reqpath[served] = q->path;
    reqlen[served] = q->payload_len;
    if (q->payload_len) memcpy(reqs[served], q->payload, q->payload_len);
  }
  if (served >= nscript) return IDPROV_ERR_TIMEOUT;
  r->code = script[served].code;
  r->max_age = script[served].max_age ? script[served].max_age : 60;
  r->content_format = 60;
  if (script[served].len > r->cap) return IDPROV_ERR_BUFFER;
  memcpy(r->buf, script[served].body, script[served].len);
  r->len = script[served].len;
  served++;
  return 0;
}

/* script helpers: build response maps with the encoder */
static idprov_cbor_enc_t E;
static step_t *add(uint8_t cls, uint8_t det, size_t entries) {
  step_t *s = &script[nscript++];
  s->code = IDPROV_COAP_CODE(cls, det);
  s->max_age = 0;
  idprov_cbor_enc_init(&E, s->body, sizeof s->body);
  idprov_cbor_put_map(&E, entries);
  return s;
}
static void done(step_t *s) { s->len = E.len; }
static void kv_uint(unsigned k, uint64_t v) { idprov_cbor_put_uint(&E, k); idprov_cbor_put_uint(&E, v); }
static void kv_bytes(unsigned k, const uint8_t *p, size_t n) { idprov_cbor_put_uint(&E, k); idprov_cbor_put_bytes(&E, p, n); }
static const uint8_t NONCE1[24] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
static const uint8_t NONCE2[16] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};
static void challenge(const uint8_t *nonce, size_t n) { step_t *s = add(4, 1, 2); kv_bytes(4, nonce, n); kv_uint(15, 3); done(s); }
static void approve(void) { step_t *s = add(2, 1, 4); kv_uint(0, 0); kv_bytes(8, VEC_TOKEN, VEC_TOKEN_LEN); kv_uint(9, 1767229200u); kv_uint(11, 3600); done(s); }
/* A 2.01 that carries the nonce for the next POST (spec §3, key 4; keys in canonical order). */
static void approve_next(const uint8_t *nonce, size_t n) { step_t *s = add(2, 1, 5); kv_uint(0, 0); kv_bytes(4, nonce, n); kv_bytes(8, VEC_TOKEN, VEC_TOKEN_LEN); kv_uint(9, 1767229200u); kv_uint(11, 3600); done(s); }
static void pending(uint64_t retry) { step_t *s = add(2, 5, 3); kv_uint(0, 1); kv_bytes(4, NONCE1, 24); kv_uint(10, retry); done(s); }
static void keyset(void) { step_t *s = &script[nscript++]; s->code = IDPROV_COAP_CODE(2, 5); memcpy(s->body, VEC_KEYSET, VEC_KEYSET_LEN); s->len = VEC_KEYSET_LEN; s->max_age = 0; }
static void sealed(void) { step_t *s = &script[nscript++]; s->code = IDPROV_COAP_CODE(2, 1); memcpy(s->body, VEC_SEALED_RESPONSE, VEC_SEALED_RESPONSE_LEN); s->len = VEC_SEALED_RESPONSE_LEN; s->max_age = 0; }

/* the device: the vector's ID and keys */
static idprov_ctx_t ctx;
static fake_clock_t clk;
static fake_storage_t store;
static uint8_t tx[1100], rx[700];

static void setup(const char *id) {
  uint8_t k[64];
  memset(&ctx, 0, sizeof ctx);
  memset(&clk, 0, sizeof clk);
  memset(&store, 0, sizeof store);
  nscript = served = 0;
  ctx.cfg.id = id;
  idprov_crypto_sodium(&ctx.crypto);
  ctx.transport.exchange = fx_exchange;
  fake_storage(&ctx.storage, &store);
  fake_clock(&ctx.clock, &clk);
  fake_random(&ctx.random);
  ctx.tx = tx;
  ctx.tx_cap = sizeof tx;
  ctx.rx = rx;
  ctx.rx_cap = sizeof rx;
  memcpy(k, VEC_SEED, 32);
  memcpy(k + 32, VEC_XSK, 32);
  fs_store(&store, IDPROV_ITEM_KEY, k, 64);
}
/* The body of request i, and the bytes under an integer key of it (NULL when absent). */
static const uint8_t *body_of(unsigned i, size_t *len) {
  static idprov_sign1_t s;
  if (idprov_sign1_parse(reqs[i], reqlen[i], &s)) return NULL;
  *len = s.payload.len;
  return s.payload.ptr;
}
static int body_key(unsigned i, int key, idprov_bytes_t *out) {
  size_t len;
  const uint8_t *b = body_of(i, &len);
  idprov_cbor_dec_t d;
  idprov_cbor_item_t it;
  uint64_t n, j;
  if (!b) return 0;
  idprov_cbor_dec_init(&d, b, len);
  idprov_cbor_next(&d, &it);
  n = it.arg;
  for (j = 0; j < n; j++) {
    idprov_cbor_next(&d, &it);
    if ((int)it.arg == key) {
      idprov_cbor_next(&d, &it);
      out->ptr = it.ptr;
      out->len = (size_t)it.arg;
      return 1;
    }
    idprov_cbor_fast_skip(&d);
  }
  return 0;
}

TEST(an_allowlisted_device_is_provisioned_after_one_challenge) {
  idprov_bytes_t b;
  setup(VEC_ID);
  CHECK_EQ(idprov_init(&ctx, 0), 0);
  challenge(NONCE1, 24);
  approve();
  CHECK_EQ(idprov_step(&ctx), IDPROV_NEXT_AGAIN);
  CHECK_EQ(ctx.state, IDPROV_ST_CHALLENGED);
  CHECK_EQ(body_key(0, 4, &b), 0); /* the first POST has no nonce */
  CHECK_EQ(idprov_step(&ctx), IDPROV_NEXT_DONE);
  CHECK_EQ(body_key(1, 4, &b), 1);
  CHECK_EQ(b.len, 24);
  CHECK_MEM(b.ptr, NONCE1, 24);
  CHECK_EQ(ctx.state, IDPROV_ST_PROVISIONED);
  CHECK_EQ(ctx.token_len, VEC_TOKEN_LEN);
  CHECK_EQ(store.present[IDPROV_ITEM_TOKEN], 1);
  CHECK_MEM(store.data[IDPROV_ITEM_TOKEN], VEC_TOKEN, VEC_TOKEN_LEN);
  CHECK_EQ(ctx.attempts, 2);
  CHECK(strcmp(reqpath[1], "/idprov/request") == 0);
  CHECK_MEM(ctx.kid, VEC_KID, 8); /* remembered from the token */
}
TEST(the_request_with_mac_seal_and_oob_is_the_vector_envelope) {
  setup(VEC_ID);
  ctx.cfg.mac = VEC_MAC;
  ctx.cfg.mac_len = VEC_MAC_LEN;
  ctx.cfg.seal = 1;
  ctx.cfg.oob_secret = (const uint8_t *)VEC_OOB_SECRET;
  ctx.cfg.oob_secret_len = strlen(VEC_OOB_SECRET);
  CHECK_EQ(idprov_init(&ctx, 0), 0);
  challenge(NONCE2, 16);
  sealed();
  CHECK_EQ(idprov_step(&ctx), IDPROV_NEXT_AGAIN);
  CHECK_EQ(idprov_step(&ctx), IDPROV_NEXT_DONE);
  CHECK_EQ(reqlen[1], VEC_REQ_UNTAGGED_LEN);
  CHECK_MEM(reqs[1], VEC_REQ_UNTAGGED, VEC_REQ_UNTAGGED_LEN);
  CHECK(ctx.events & IDPROV_EV_SEALED);
  CHECK_MEM(ctx.token, VEC_TOKEN, VEC_TOKEN_LEN);
  CHECK_EQ(ctx.token_ttl, 3600);
}
TEST(a_psk_session_sends_no_oob_proof) {
  idprov_bytes_t b;
  setup(VEC_ID);
  ctx.cfg.oob_secret = (const uint8_t *)VEC_OOB_SECRET;
  ctx.cfg.oob_secret_len = strlen(VEC_OOB_SECRET);
  ctx.cfg.psk_session = 1;
  idprov_init(&ctx, 0);
  challenge(NONCE2, 16);
  approve();
  CHECK_EQ(idprov_provision(&ctx, 0), 0);
  CHECK_EQ(body_key(1, 7, &b), 0);
}
TEST(the_token_is_verified_against_the_key_set) {
  setup(VEC_ID);
  ctx.cfg.verify_token = 1;
  idprov_init(&ctx, 0);
  challenge(NONCE1, 24);
  approve();
  keyset();
  CHECK_EQ(idprov_provision(&ctx, 0), 0);
  CHECK(ctx.events & IDPROV_EV_VERIFIED);
  CHECK(strcmp(reqpath[2], "/idprov/keys") == 0);
  CHECK_EQ(ctx.nkeys, 1);
}
TEST(a_token_whose_kid_is_not_in_the_key_set_is_refused) {
  step_t *s;
  setup(VEC_ID);
  ctx.cfg.verify_token = 1;
  idprov_init(&ctx, 0);
  challenge(NONCE1, 24);
  approve();
  s = &script[nscript++];
  s->code = IDPROV_COAP_CODE(2, 5);
  s->body[0] = 0x80; /* an empty key set */
  s->len = 1;
  CHECK_EQ(idprov_provision(&ctx, 0), IDPROV_ERR_CRYPTO);
  CHECK_EQ(store.present[IDPROV_ITEM_TOKEN], 0);
}
TEST(a_token_for_another_device_is_refused) {
  setup("another-device");
  idprov_init(&ctx, 0);
  challenge(NONCE1, 24);
  approve();
  CHECK_EQ(idprov_provision(&ctx, 0), IDPROV_ERR_TOKEN_MISMATCH);
  CHECK_EQ(store.present[IDPROV_ITEM_TOKEN], 0);
}
TEST(pending_waits_the_retry_hint_and_reuses_the_nonce_of_the_205) {
  idprov_bytes_t b;
  setup(VEC_ID);
  idprov_init(&ctx, 0);
  challenge(NONCE2, 16);
  pending(60);
  pending(90);
  approve();
  CHECK_EQ(idprov_provision(&ctx, 0), IDPROV_ERR_PENDING); /* no wait budget */
  CHECK_EQ(ctx.state, IDPROV_ST_PENDING);
  CHECK_EQ(ctx.wait_s, 60);
  CHECK_EQ(idprov_provision(&ctx, 1000), 0);
  CHECK_EQ(clk.slept_ms, 90 * 1000u); /* the 60 s wait was the caller's (budget 0) */
  CHECK_EQ(body_key(2, 4, &b), 1);
  CHECK_MEM(b.ptr, NONCE1, 24); /* the 2.05's nonce: no extra round trip */
  CHECK_EQ(served, 4);
}
TEST(the_wait_budget_stops_a_pending_device) {
  setup(VEC_ID);
  idprov_init(&ctx, 0);
  challenge(NONCE2, 16);
  pending(60);
  pending(90);
  CHECK_EQ(idprov_provision(&ctx, 100), IDPROV_ERR_PENDING);
  CHECK_EQ(clk.slept_ms, 60000u);
}
TEST(rate_limited_backs_off_max_age_and_disabled_waits) {
  step_t *s;
  setup(VEC_ID);
  idprov_init(&ctx, 0);
  s = add(4, 29, 2); kv_uint(10, 5); kv_uint(15, 9); done(s); s->max_age = 5;
  s = add(5, 3, 3); kv_uint(10, 30); kv_uint(15, 10); idprov_cbor_put_uint(&E, 12); idprov_cbor_put_text(&E, "off", 3); done(s);
  s = add(4, 29, 1); kv_uint(15, 9); done(s); s->max_age = 7; /* no key 10: Max-Age */
  CHECK_EQ(idprov_step(&ctx), IDPROV_NEXT_WAIT);
  CHECK_EQ(ctx.state, IDPROV_ST_BACKOFF);
  CHECK_EQ(ctx.last_err, IDPROV_E_RATE_LIMITED);
  CHECK_EQ(ctx.wait_s, 5);
  CHECK_EQ(idprov_step(&ctx), IDPROV_NEXT_WAIT);
  CHECK_EQ(ctx.state, IDPROV_ST_DISABLED);
  CHECK_EQ(ctx.last_err, IDPROV_E_DISABLED);
  CHECK_EQ(ctx.wait_s, 30);
  CHECK_EQ(idprov_step(&ctx), IDPROV_NEXT_WAIT);
  CHECK_EQ(ctx.wait_s, 7);
  challenge(NONCE1, 24);
  approve();
  clk.slept_ms = 0;
  CHECK_EQ(idprov_provision(&ctx, 100), 0);
}
TEST(refusals_are_terminal_with_the_servers_err) {
  static const unsigned errs[] = {4, 5, 6, 7};
  unsigned i;
  for (i = 0; i < 4; i++) {
    step_t *s;
    setup(VEC_ID);
    idprov_init(&ctx, 0);
    challenge(NONCE1, 24);
    s = add(4, 3, 3); kv_uint(0, 2); kv_uint(10, 3600); kv_uint(15, errs[i]); done(s);
    CHECK_EQ(idprov_provision(&ctx, 10000), (int)errs[i]);
    CHECK_EQ(ctx.state, IDPROV_ST_REFUSED);
    CHECK_EQ(ctx.wait_s, 3600);
    CHECK_EQ(clk.slept_ms, 0);
  }
}
TEST(a_401_other_than_nonce_is_terminal) {
  step_t *s;
  setup(VEC_ID);
  idprov_init(&ctx, 0);
  challenge(NONCE1, 24);
  s = add(4, 1, 2); kv_bytes(4, NONCE2, 16); kv_uint(15, 11); done(s);
  CHECK_EQ(idprov_provision(&ctx, 100), IDPROV_E_OOB_MISMATCH);
  setup(VEC_ID);
  idprov_init(&ctx, 0);
  challenge(NONCE1, 24);
  challenge(NONCE1, 24);
  challenge(NONCE1, 24);
  challenge(NONCE1, 24);
  CHECK_EQ(idprov_provision(&ctx, 100), IDPROV_E_NONCE); /* a server that never accepts: bounded */
  CHECK_EQ(served, 4);
}
TEST(other_codes_and_bad_bodies_map_to_errors) {
  step_t *s;
  setup(VEC_ID);
  idprov_init(&ctx, 0);
  s = add(4, 0, 1); kv_uint(15, 1); done(s);
  CHECK_EQ(idprov_provision(&ctx, 100), IDPROV_E_MALFORMED);
  setup(VEC_ID);
  idprov_init(&ctx, 0);
  s = &script[nscript++]; s->code = IDPROV_COAP_CODE(4, 13); s->len = 0;
  CHECK_EQ(idprov_provision(&ctx, 100), IDPROV_E_TOO_LARGE);
  setup(VEC_ID);
  idprov_init(&ctx, 0);
  s = &script[nscript++]; s->code = IDPROV_COAP_CODE(2, 1); s->body[0] = 0xa1; s->body[1] = 0x00; s->len = 2; /* truncated */
  CHECK_EQ(idprov_provision(&ctx, 100), IDPROV_ERR_PROTOCOL);
  setup(VEC_ID);
  idprov_init(&ctx, 0);
  CHECK_EQ(idprov_provision(&ctx, 100), IDPROV_ERR_TIMEOUT); /* no server */
}
TEST(refresh_runs_at_half_life_and_handles_the_challenge) {
  idprov_bytes_t b;
  setup(VEC_ID);
  idprov_init(&ctx, 0);
  challenge(NONCE1, 24);
  approve();
  CHECK_EQ(idprov_provision(&ctx, 0), 0);
  CHECK_EQ(idprov_refresh_in_s(&ctx), 1800);
  clk.ms += 1000u * 1000u;
  CHECK_EQ(idprov_refresh_in_s(&ctx), 800);
  challenge(NONCE2, 16);
  approve();
  CHECK_EQ(idprov_refresh(&ctx), 0);
  CHECK(strcmp(reqpath[3], "/idprov/refresh") == 0);
  CHECK_EQ(body_key(3, 8, &b), 1);
  CHECK_EQ(b.len, VEC_TOKEN_LEN);
  CHECK_EQ(body_key(3, 4, &b), 1);
  CHECK_EQ(idprov_refresh_in_s(&ctx), 1800);
}
TEST(a_refresh_signs_with_the_nonce_the_2_01_carried_in_one_round_trip) {
  idprov_bytes_t b;
  setup(VEC_ID);
  idprov_init(&ctx, 0);
  challenge(NONCE1, 24);
  approve_next(NONCE2, 16);
  CHECK_EQ(idprov_provision(&ctx, 0), 0);
  clk.ms += 1800u * 1000u;
  approve();
  CHECK_EQ(idprov_refresh(&ctx), 0);
  CHECK_EQ(served, 3); /* challenge, 2.01, then the refresh's 2.01 at once: no 4.01 */
  CHECK(strcmp(reqpath[2], "/idprov/refresh") == 0);
  CHECK_EQ(body_key(2, 4, &b), 1);
  CHECK_EQ(b.len, 16);
  CHECK(memcmp(b.ptr, NONCE2, 16) == 0);
  /* That 2.01 carried none (an older server): the next refresh starts without a nonce. */
  clk.ms += 1800u * 1000u;
  challenge(NONCE1, 24);
  approve();
  CHECK_EQ(idprov_refresh(&ctx), 0);
  CHECK_EQ(body_key(3, 4, &b), 0);
  CHECK_EQ(body_key(4, 4, &b), 1);
}
TEST(a_refresh_refused_for_an_expired_token_drops_it) {
  step_t *s;
  setup(VEC_ID);
  idprov_init(&ctx, 0);
  challenge(NONCE1, 24);
  approve();
  CHECK_EQ(idprov_provision(&ctx, 0), 0);
  s = add(4, 3, 2); kv_uint(15, 8); kv_uint(0, 2); done(s);
  CHECK_EQ(idprov_refresh(&ctx), IDPROV_E_TOKEN_EXPIRED);
  CHECK_EQ(ctx.token_len, 0);
  CHECK_EQ(store.present[IDPROV_ITEM_TOKEN], 0);
  CHECK_EQ(ctx.state, IDPROV_ST_START);
  CHECK_EQ(idprov_refresh(&ctx), IDPROV_ERR_STATE);
}
TEST(a_stored_token_survives_a_restart) {
  setup(VEC_ID);
  clk.epoch = 1767225600u + 100u; /* iat + 100 s */
  idprov_init(&ctx, 0);
  challenge(NONCE1, 24);
  approve();
  CHECK_EQ(idprov_provision(&ctx, 0), 0);
  ctx.token_len = 0;
  CHECK_EQ(idprov_init(&ctx, 0), 0); /* "reboot": everything from storage */
  CHECK_EQ(ctx.state, IDPROV_ST_PROVISIONED);
  CHECK_EQ(ctx.token_len, VEC_TOKEN_LEN);
  CHECK_EQ(ctx.token_ttl, 3600);
  CHECK_EQ(idprov_refresh_in_s(&ctx), 1700); /* exp - ttl/2 - now, from the wall clock */
  CHECK_EQ(ctx.have_server, 1);
}
TEST(a_changed_server_kid_or_fp_is_reported) {
  uint8_t kid[8], fp[32];
  setup(VEC_ID);
  idprov_init(&ctx, 0);
  memset(fp, 7, sizeof fp);
  CHECK_EQ(idprov_server_seen(&ctx, VEC_KID, fp), 0);
  CHECK_EQ(ctx.events, 0); /* first sight: remembered, nothing to compare */
  CHECK_EQ(idprov_server_seen(&ctx, VEC_KID, fp), 0);
  CHECK_EQ(ctx.events, 0);
  memcpy(kid, VEC_KID, 8);
  kid[7] ^= 1;
  fp[0] ^= 1;
  CHECK_EQ(idprov_server_seen(&ctx, kid, fp), 0);
  CHECK(ctx.events & IDPROV_EV_KID_CHANGED);
  CHECK(ctx.events & IDPROV_EV_FP_CHANGED);
  CHECK_EQ(store.data[IDPROV_ITEM_SERVER][7], kid[7]);
}
TEST(a_missing_key_is_created_only_when_asked) {
  setup(VEC_ID);
  store.present[IDPROV_ITEM_KEY] = 0;
  CHECK_EQ(idprov_init(&ctx, 0), IDPROV_ERR_NOT_FOUND);
  CHECK_EQ(idprov_init(&ctx, 1), 0);
  CHECK_EQ(store.present[IDPROV_ITEM_KEY], 1);
  CHECK(memcmp(ctx.pk, VEC_PK, 32) != 0);
  setup("bad id");
  CHECK_EQ(idprov_init(&ctx, 0), IDPROV_ERR_ARG);
}

static const tt_test_t TESTS[] = {
  T(an_allowlisted_device_is_provisioned_after_one_challenge), T(the_request_with_mac_seal_and_oob_is_the_vector_envelope),
  T(a_psk_session_sends_no_oob_proof), T(the_token_is_verified_against_the_key_set),
  T(a_token_whose_kid_is_not_in_the_key_set_is_refused), T(a_token_for_another_device_is_refused),
  T(pending_waits_the_retry_hint_and_reuses_the_nonce_of_the_205), T(the_wait_budget_stops_a_pending_device),
  T(rate_limited_backs_off_max_age_and_disabled_waits), T(refusals_are_terminal_with_the_servers_err),
  T(a_401_other_than_nonce_is_terminal), T(other_codes_and_bad_bodies_map_to_errors),
  T(refresh_runs_at_half_life_and_handles_the_challenge), T(a_refresh_signs_with_the_nonce_the_2_01_carried_in_one_round_trip), T(a_refresh_refused_for_an_expired_token_drops_it),
  T(a_stored_token_survives_a_restart), T(a_changed_server_kid_or_fp_is_reported), T(a_missing_key_is_created_only_when_asked),
};
int main(int argc, char **argv) { return tt_main(argc, argv, TESTS, sizeof TESTS / sizeof TESTS[0]); }
