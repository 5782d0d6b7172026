/*
 * Codec tests against the shared vectors and the fixture messages (fixtures.h, generated from
 * fixtures/ by gen-fixtures.mjs), plus truncation (every strict prefix) and mutation (every byte
 * replaced by each of its 255 other values) of every decoder. Portable: also runs on
 * qemu-system-riscv32 (no libsodium; the signer is a stub that checks the Sig_structure).
 */
#include "idprov.h"
#include "../src/idprov_sign.h"
#include "fixtures.h"
#include "tiny_test.h"
#include <stdlib.h>

/* ---- a string builder for the canonical dumps (see gen-fixtures.mjs) ---- */
static char dbuf[4096 * 3];
static size_t dlen;
static void dput(const char *s, size_t n) {
  if (n > sizeof dbuf - 1 - dlen) n = sizeof dbuf - 1 - dlen;
  memcpy(dbuf + dlen, s, n);
  dlen += n;
  dbuf[dlen] = 0;
}
static void ds(const char *s) { dput(s, strlen(s)); }
static void dhex(const uint8_t *p, size_t n) {
  static const char H[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    char c[2] = {H[p[i] >> 4], H[p[i] & 15]};
    dput(c, 2);
  }
}
static void du64(uint64_t v) {
  char t[24];
  int i = 23;
  t[i] = 0;
  do { t[--i] = (char)('0' + v % 10); v /= 10; } while (v);
  ds(t + i);
}
/* decimal of v + 1 (for -1 - v with v up to 2^64 - 1) */
static void du64_plus1(uint64_t v) {
  if (v == UINT64_MAX) ds("18446744073709551616");
  else du64(v + 1);
}
static void dkv(const char *k) {
  if (dlen) ds(";");
  ds(k);
  ds("=");
}

static void dump_item(idprov_cbor_dec_t *d) {
  idprov_cbor_item_t it;
  uint64_t i;
  if (idprov_cbor_next(d, &it)) { ds("?"); return; }
  switch (it.major) {
  case IDPROV_CBOR_UINT: du64(it.arg); break;
  case IDPROV_CBOR_NINT: ds("-"); du64_plus1(it.arg); break;
  case IDPROV_CBOR_BYTES: ds("h'"); dhex(it.ptr, (size_t)it.arg); ds("'"); break;
  case IDPROV_CBOR_TEXT:
    ds("\"");
    for (i = 0; i < it.arg; i++) {
      char ch = (char)it.ptr[i];
      if (ch == '"' || ch == '\\') ds("\\");
      dput(&ch, 1);
    }
    ds("\"");
    break;
  case IDPROV_CBOR_ARRAY:
    ds("[");
    for (i = 0; i < it.arg; i++) { if (i) ds(","); dump_item(d); }
    ds("]");
    break;
  case IDPROV_CBOR_MAP:
    ds("{");
    for (i = 0; i < it.arg; i++) { if (i) ds(","); dump_item(d); ds(":"); dump_item(d); }
    ds("}");
    break;
  case IDPROV_CBOR_TAG: du64(it.arg); ds("("); dump_item(d); ds(")"); break;
  default: ds(it.arg == 20 ? "false" : it.arg == 21 ? "true" : "null");
  }
}

/* ---- one "decode and dump" per decoder; returns the decoder's result ---- */
typedef int (*decode_fn)(const uint8_t *p, size_t n);

static int dec_cbor(const uint8_t *p, size_t n) {
  idprov_cbor_dec_t d;
  int rc = idprov_cbor_check(p, n);
  if (rc) return rc;
  idprov_cbor_dec_init(&d, p, n);
  dump_item(&d);
  return rc;
}
static int dec_sign1(const uint8_t *p, size_t n) {
  idprov_sign1_t s;
  int rc = idprov_sign1_parse(p, n, &s);
  if (rc) return rc;
  dkv("protected"); dhex(s.protected_hdr.ptr, s.protected_hdr.len);
  dkv("payload"); dhex(s.payload.ptr, s.payload.len);
  dkv("signature"); dhex(s.signature.ptr, s.signature.len);
  if (s.kid.len) { dkv("kid"); dhex(s.kid.ptr, s.kid.len); }
  /* every range lies inside the input */
  if (s.payload.ptr < p || s.payload.ptr + s.payload.len > p + n) return -100;
  return rc;
}
static void dtext(idprov_bytes_t b) { dput((const char *)b.ptr, b.len); }
static int dec_claims(const uint8_t *p, size_t n) {
  idprov_claims_t c;
  int rc = idprov_claims_parse(p, n, &c);
  if (rc) return rc;
  dkv("iss"); dtext(c.iss);
  dkv("sub"); dtext(c.sub);
  if (c.has_aud) { dkv("aud"); dtext(c.aud); }
  dkv("exp"); du64(c.exp);
  dkv("iat"); du64(c.iat);
  dkv("cti"); dhex(c.cti.ptr, c.cti.len);
  dkv("cnf"); dhex(c.cnf, 32);
  if (c.has_role) { dkv("role"); dtext(c.role); }
  return rc;
}
static int dec_keyset(const uint8_t *p, size_t n) {
  idprov_key_t keys[4];
  size_t count, i;
  int rc = idprov_keyset_parse(p, n, keys, 4, &count);
  if (rc) return rc;
  for (i = 0; i < count && i < 4; i++) {
    if (i) ds(",");
    dhex(keys[i].kid, 8); ds(":"); dhex(keys[i].x, 32);
  }
  return rc;
}
static int dec_response(const uint8_t *p, size_t n) {
  idprov_response_t r;
  int rc = idprov_response_parse(p, n, &r);
  if (rc) return rc;
  if (r.has & IDPROV_R_STATUS) { dkv("status"); du64(r.status); }
  if (r.has & IDPROV_R_NONCE) { dkv("nonce"); dhex(r.nonce.ptr, r.nonce.len); }
  if (r.has & IDPROV_R_TOKEN) { dkv("token"); dhex(r.token.ptr, r.token.len); }
  if (r.has & IDPROV_R_EXP) { dkv("exp"); du64(r.exp); }
  if (r.has & IDPROV_R_RETRY) { dkv("retry"); du64(r.retry); }
  if (r.has & IDPROV_R_TTL) { dkv("ttl"); du64(r.ttl); }
  if (r.has & IDPROV_R_DIAG) { dkv("diag"); dtext(r.diag); }
  if (r.has & IDPROV_R_SEALED) {
    dkv("sealed");
    ds("epk="); dhex(r.epk.ptr, r.epk.len);
    ds(";nonce="); dhex(r.box_nonce.ptr, r.box_nonce.len);
    ds(";box="); dhex(r.box.ptr, r.box.len);
  }
  if (r.has & IDPROV_R_HUB) { dkv("hub"); dtext(r.hub); }
  if (r.has & IDPROV_R_ERR) { dkv("err"); du64(r.err); }
  return rc;
}
static int dec_coap(const uint8_t *p, size_t n) {
  idprov_coap_msg_t m;
  int rc = idprov_coap_parse(p, n, &m);
  if (rc == 0 && (m.payload < p || m.payload + m.payload_len > p + n)) return -100;
  return rc;
}

static void run_fixtures(const char *file, const fx_case_t *fx, size_t n, decode_fn dec) {
  size_t i;
  for (i = 0; i < n; i++) {
    int rc;
    dlen = 0;
    dbuf[0] = 0;
    rc = dec(fx[i].bytes, fx[i].len);
    if (fx[i].valid) {
      if (rc != 0 || strcmp(dbuf, fx[i].expect) != 0) {
        printf("  %s \"%s\": rc %d\n    got  %s\n    want %s\n", file, fx[i].name, rc, dbuf, fx[i].expect);
        tt_failed++;
      }
    } else if (rc != IDPROV_ERR_DECODE) {
      printf("  %s \"%s\"%s%s: expected IDPROV_ERR_DECODE, got %d\n", file, fx[i].name, fx[i].stricter ? " (device is stricter: " : "",
             fx[i].stricter ? fx[i].stricter : "", rc);
      tt_failed++;
    }
    tt_checks++;
  }
}

TEST(cbor_fixtures_decode_as_the_server_reads_them_or_are_refused) { run_fixtures("cbor.json", FX_cbor, FX_cbor_N, dec_cbor); }
TEST(sign1_fixtures) { run_fixtures("sign1.json", FX_sign1, FX_sign1_N, dec_sign1); }
TEST(claims_fixtures) { run_fixtures("claims.json", FX_claims, FX_claims_N, dec_claims); }
TEST(keyset_fixtures) { run_fixtures("keyset.json", FX_keyset, FX_keyset_N, dec_keyset); }
TEST(response_fixtures) { run_fixtures("response.json", FX_response, FX_response_N, dec_response); }

/* ---- truncation and mutation ---- */
static uint8_t mbuf[4096];
/* Every strict prefix of every valid case fails with IDPROV_ERR_DECODE (definite lengths: a prefix
   of one item is never one whole item). */
static void truncations(const fx_case_t *fx, size_t n, decode_fn dec) {
  size_t i, k;
  for (i = 0; i < n; i++) {
    if (!fx[i].valid) continue;
    for (k = 0; k < fx[i].len; k++) {
      int rc;
      uint8_t *b = (uint8_t *)malloc(k ? k : 1); /* exactly k bytes: ASan/valgrind see any read past them */
      memcpy(b, fx[i].bytes, k);
      dlen = 0;
      rc = dec(k ? b : NULL, k);
      free(b);
      tt_checks++;
      if (rc != IDPROV_ERR_DECODE) {
        printf("  \"%s\" cut to %u bytes: rc %d\n", fx[i].name, (unsigned)k, rc);
        tt_failed++;
        break;
      }
    }
  }
}
/* Every byte of every case replaced by each other value: the decoder returns OK or
   IDPROV_ERR_DECODE, and never reads or points outside the input. */
static int quick(void) {
#ifdef IDPROV_TEST_QUICK
  return 1;
#else
  return getenv("IDPROV_TEST_QUICK") != NULL; /* valgrind: the 8 bit flips and 0xff per byte only */
#endif
}
static void mutations(const fx_case_t *fx, size_t n, decode_fn dec) {
  size_t i, k;
  unsigned v;
  int q = quick();
  for (i = 0; i < n; i++) {
    size_t len = fx[i].len;
    uint8_t *b = (uint8_t *)malloc(len);
    for (k = 0; k < len; k++) {
      for (v = 1; v < 256; v++) {
        int rc;
        if (q && (v & (v - 1)) != 0 && v != 0xff) continue;
        memcpy(b, fx[i].bytes, len);
        b[k] ^= (uint8_t)v;
        dlen = 0;
        rc = dec(b, len);
        tt_checks++;
        if (rc != IDPROV_OK && rc != IDPROV_ERR_DECODE) {
          printf("  \"%s\" byte %u ^ 0x%02x: rc %d\n", fx[i].name, (unsigned)k, v, rc);
          tt_failed++;
          free(b);
          return;
        }
      }
    }
    free(b);
  }
}
TEST(cbor_truncated_inputs_are_refused) { truncations(FX_cbor, FX_cbor_N, dec_cbor); }
TEST(sign1_truncated_inputs_are_refused) { truncations(FX_sign1, FX_sign1_N, dec_sign1); }
TEST(claims_truncated_inputs_are_refused) { truncations(FX_claims, FX_claims_N, dec_claims); }
TEST(keyset_truncated_inputs_are_refused) { truncations(FX_keyset, FX_keyset_N, dec_keyset); }
TEST(response_truncated_inputs_are_refused) { truncations(FX_response, FX_response_N, dec_response); }
TEST(cbor_mutations_give_only_clean_results) { mutations(FX_cbor, FX_cbor_N, dec_cbor); }
TEST(sign1_mutations_give_only_clean_results) { mutations(FX_sign1, FX_sign1_N, dec_sign1); }
TEST(claims_mutations_give_only_clean_results) { mutations(FX_claims, FX_claims_N, dec_claims); }
TEST(keyset_mutations_give_only_clean_results) { mutations(FX_keyset, FX_keyset_N, dec_keyset); }
TEST(response_mutations_give_only_clean_results) { mutations(FX_response, FX_response_N, dec_response); }

/* ---- CoAP datagrams ---- */
static const uint8_t COAP_ACK_201[] = {0x64, 0x41, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0xc1, 0x3c, 0x21, 0x3c, 0xff, 0xa1, 0x00, 0x00};
static const fx_case_t FX_coap[] = {
  {"ACK 2.01 with Content-Format 60, Max-Age 60 and a payload", COAP_ACK_201, sizeof COAP_ACK_201, 1, "", NULL},
};
TEST(coap_datagram_parses) {
  idprov_coap_msg_t m;
  CHECK_EQ(idprov_coap_parse(COAP_ACK_201, sizeof COAP_ACK_201, &m), 0);
  CHECK_EQ(m.type, 2);
  CHECK_EQ(m.code, IDPROV_COAP_CODE(2, 1));
  CHECK_EQ(m.mid, 0x1234);
  CHECK_EQ(m.tkl, 4);
  CHECK_EQ(m.content_format, 60);
  CHECK_EQ(m.max_age, 60);
  CHECK_EQ(m.payload_len, 3);
}
TEST(coap_truncated_datagrams_are_refused_or_shorter_messages) {
  /* A CoAP datagram has no length of its own: a prefix may be a valid shorter message. Check only
     that every prefix gives OK or IDPROV_ERR_DECODE and stays inside the input. */
  size_t k;
  for (k = 0; k < sizeof COAP_ACK_201; k++) {
    int rc;
    memcpy(mbuf, COAP_ACK_201, k);
    rc = dec_coap(k ? mbuf : NULL, k);
    CHECK(rc == 0 || rc == IDPROV_ERR_DECODE);
  }
  CHECK_EQ(dec_coap(mbuf, 3), IDPROV_ERR_DECODE);
}
TEST(coap_mutations_give_only_clean_results) { mutations(FX_coap, 1, dec_coap); }
TEST(coap_request_build_has_uri_path_content_format_and_block2) {
  uint8_t buf[64], tok[4] = {1, 2, 3, 4}, pl[2] = {0xa0, 0x00};
  idprov_coap_msg_t m;
  int n = idprov_coap_build(buf, sizeof buf, 0, IDPROV_COAP_POST, 0x0102, tok, 4, "/idprov/request", 18, 0x12, pl, 1);
  static const uint8_t want[] = {0x44, 0x02, 0x01, 0x02, 1, 2, 3, 4, 0xb6, 'i', 'd', 'p', 'r', 'o', 'v', 0x07, 'r', 'e', 'q',
                                 'u', 'e', 's', 't', 0x11, 18, 0xb1, 0x12, 0xff, 0xa0};
  CHECK_EQ(n, sizeof want);
  CHECK_MEM(buf, want, sizeof want);
  CHECK_EQ(idprov_coap_parse(buf, (size_t)n, &m), 0);
  CHECK_EQ(m.has_block2, 1);
  CHECK_EQ(m.block2, 0x12);
  CHECK_EQ(idprov_coap_build(buf, 20, 0, IDPROV_COAP_POST, 1, tok, 4, "/idprov/request", 18, -1, pl, 1), IDPROV_ERR_BUFFER);
}

/* ---- encoders against the shared vectors ---- */
TEST(request_body_is_byte_identical_to_the_vector) {
  uint8_t buf[256];
  idprov_request_body_t b;
  int n;
  memset(&b, 0, sizeof b);
  b.id = VEC_ID;
  b.pk = VEC_PK;
  b.mac = VEC_MAC;
  b.mac_len = VEC_MAC_LEN;
  b.nonce = VEC_NONCE;
  b.nonce_len = VEC_NONCE_LEN;
  b.xk = VEC_XPK;
  b.oob = VEC_OOB_HMAC;
  n = idprov_request_body_build(&b, buf, sizeof buf);
  CHECK_EQ(n, VEC_REQ_BODY_LEN);
  CHECK_MEM(buf, VEC_REQ_BODY, VEC_REQ_BODY_LEN);
  CHECK_EQ(idprov_request_body_build(&b, buf, 100), IDPROV_ERR_BUFFER);
  b.type = 3;
  CHECK_EQ(idprov_request_body_build(&b, buf, sizeof buf), IDPROV_ERR_ARG);
  b.type = 1;
  n = idprov_request_body_build(&b, buf, sizeof buf);
  CHECK_EQ(n, VEC_REQ_BODY_LEN + 2); /* 05 01 inserted, map head a7 */
  CHECK_EQ(buf[0], 0xa7);
}
TEST(request_body_refuses_bad_ids_and_sizes) {
  uint8_t buf[256];
  idprov_request_body_t b;
  memset(&b, 0, sizeof b);
  b.pk = VEC_PK;
  b.id = "dev/1";
  CHECK_EQ(idprov_request_body_build(&b, buf, sizeof buf), IDPROV_ERR_ARG);
  b.id = "";
  CHECK_EQ(idprov_request_body_build(&b, buf, sizeof buf), IDPROV_ERR_ARG);
  b.id = "d234567890123456789012345678901234567890123456789012345678901234"; /* 64 */
  CHECK(idprov_request_body_build(&b, buf, sizeof buf) > 0);
  b.id = "d2345678901234567890123456789012345678901234567890123456789012345"; /* 65 */
  CHECK_EQ(idprov_request_body_build(&b, buf, sizeof buf), IDPROV_ERR_ARG);
  b.id = "AZaz09._:-";
  b.nonce = VEC_NONCE;
  b.nonce_len = 7;
  CHECK_EQ(idprov_request_body_build(&b, buf, sizeof buf), IDPROV_ERR_ARG);
  b.nonce_len = 8;
  b.mac = VEC_MAC;
  b.mac_len = 7;
  CHECK_EQ(idprov_request_body_build(&b, buf, sizeof buf), IDPROV_ERR_ARG);
}
TEST(refresh_body_encodes_keys_in_order) {
  uint8_t buf[600];
  idprov_refresh_body_t b;
  idprov_cbor_dec_t d;
  int n;
  memset(&b, 0, sizeof b);
  b.id = "dev-1";
  b.nonce = VEC_NONCE;
  b.nonce_len = VEC_NONCE_LEN;
  b.token = VEC_TOKEN;
  b.token_len = VEC_TOKEN_LEN;
  n = idprov_refresh_body_build(&b, buf, sizeof buf);
  CHECK(n > 0);
  CHECK_EQ(idprov_cbor_check(buf, (size_t)n), 0);
  dlen = 0;
  idprov_cbor_dec_init(&d, buf, (size_t)n);
  dump_item(&d);
  CHECK(strncmp(dbuf, "{1:\"dev-1\",4:h'a0a1", 19) == 0);
  CHECK(strstr(dbuf, ",8:h'844da2") != NULL);
  /* the fixture refresh bodies that the server accepts decode in the device's subset too */
  {
    size_t i;
    for (i = 0; i < FX_refresh_body_N; i++)
      if (FX_refresh_body[i].valid) CHECK_EQ(idprov_cbor_check(FX_refresh_body[i].bytes, FX_refresh_body[i].len), 0);
  }
}
TEST(cbor_encoder_writes_shortest_heads_at_every_boundary) {
  static const struct { uint64_t v; size_t n; } cases[] = {{0, 1}, {23, 1}, {24, 2}, {255, 2}, {256, 3}, {65535, 3},
                                                          {65536, 5}, {0xffffffffu, 5}, {0x100000000u, 9}, {UINT64_MAX, 9}};
  uint8_t buf[16];
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    idprov_cbor_enc_t e;
    idprov_cbor_dec_t d;
    idprov_cbor_item_t it;
    idprov_cbor_enc_init(&e, buf, sizeof buf);
    idprov_cbor_put_uint(&e, cases[i].v);
    CHECK_EQ(e.len, cases[i].n);
    idprov_cbor_dec_init(&d, buf, e.len);
    CHECK_EQ(idprov_cbor_next(&d, &it), 0);
    CHECK(it.arg == cases[i].v);
  }
  {
    idprov_cbor_enc_t e;
    idprov_cbor_enc_init(&e, buf, sizeof buf);
    idprov_cbor_put_int(&e, -1);
    idprov_cbor_put_int(&e, -25);
    idprov_cbor_put_int(&e, INT64_MIN);
    CHECK_EQ(e.len, 1 + 2 + 9);
    CHECK_EQ(buf[0], 0x20);
    CHECK_EQ(buf[1], 0x38);
    CHECK_EQ(buf[2], 24);
    idprov_cbor_put_bytes(&e, buf, 8);
    CHECK_EQ(e.err, IDPROV_ERR_BUFFER);
  }
}
TEST(cbor_refuses_duplicate_keys_by_value) {
  static const uint8_t dup_int[] = {0xa2, 0x01, 0x00, 0x01, 0x01};
  static const uint8_t dup_text[] = {0xa2, 0x61, 'x', 0x00, 0x61, 'x', 0x01};
  static const uint8_t dup_nested[] = {0xa1, 0x01, 0xa2, 0x20, 0x00, 0x20, 0x00};
  static const uint8_t dup_long_head[] = {0xa2, 0x01, 0x00, 0x18, 0x01, 0x01}; /* 1 and 24_0(1): refused as non-shortest */
  static const uint8_t distinct[] = {0xa3, 0x01, 0x00, 0x20, 0x00, 0x41, 0x01, 0x00};
  static const uint8_t float_key[] = {0xa1, 0xf9, 0x3c, 0x00, 0x00};
  static const uint8_t array_key[] = {0xa1, 0x80, 0x00};
  CHECK_EQ(idprov_cbor_check(dup_int, sizeof dup_int), IDPROV_ERR_DECODE);
  CHECK_EQ(idprov_cbor_check(dup_text, sizeof dup_text), IDPROV_ERR_DECODE);
  CHECK_EQ(idprov_cbor_check(dup_nested, sizeof dup_nested), IDPROV_ERR_DECODE);
  CHECK_EQ(idprov_cbor_check(dup_long_head, sizeof dup_long_head), IDPROV_ERR_DECODE);
  CHECK_EQ(idprov_cbor_check(distinct, sizeof distinct), 0);
  CHECK_EQ(idprov_cbor_check(float_key, sizeof float_key), IDPROV_ERR_DECODE);
  CHECK_EQ(idprov_cbor_check(array_key, sizeof array_key), IDPROV_ERR_DECODE);
}
TEST(cbor_limits_depth_length_and_size) {
  static uint8_t big[IDPROV_CBOR_MAX_ITEM + 1];
  uint8_t deep[IDPROV_CBOR_MAX_DEPTH + 1];
  size_t i;
  memset(deep, 0x81, sizeof deep);
  deep[IDPROV_CBOR_MAX_DEPTH] = 0x00;
  CHECK_EQ(idprov_cbor_check(deep, IDPROV_CBOR_MAX_DEPTH + 1), 0); /* 8 arrays around 0 */
  deep[IDPROV_CBOR_MAX_DEPTH] = 0x80;
  CHECK_EQ(idprov_cbor_check(deep, IDPROV_CBOR_MAX_DEPTH + 1), IDPROV_ERR_DECODE); /* 9 arrays */
  /* an array of MAX_ARRAY + 1 zeros */
  big[0] = 0x98;
  big[1] = IDPROV_CBOR_MAX_ARRAY + 1;
  for (i = 0; i < IDPROV_CBOR_MAX_ARRAY + 1; i++) big[2 + i] = 0;
  CHECK_EQ(idprov_cbor_check(big, IDPROV_CBOR_MAX_ARRAY + 3), IDPROV_ERR_DECODE);
  big[1] = IDPROV_CBOR_MAX_ARRAY;
  CHECK_EQ(idprov_cbor_check(big, IDPROV_CBOR_MAX_ARRAY + 2), 0);
  /* a byte string filling MAX_ITEM exactly, and one byte over */
  big[0] = 0x59;
  big[1] = (uint8_t)((IDPROV_CBOR_MAX_ITEM - 3) >> 8);
  big[2] = (uint8_t)((IDPROV_CBOR_MAX_ITEM - 3) & 0xff);
  CHECK_EQ(idprov_cbor_check(big, IDPROV_CBOR_MAX_ITEM), 0);
  big[2] = (uint8_t)((IDPROV_CBOR_MAX_ITEM - 2) & 0xff);
  CHECK_EQ(idprov_cbor_check(big, IDPROV_CBOR_MAX_ITEM + 1), IDPROV_ERR_DECODE);
}

static int stub_sign(void *user, uint8_t sig[64], const uint8_t *msg, size_t len, const uint8_t seed[32], const uint8_t pk[32]) {
  (void)user; (void)seed; (void)pk;
  if (len != VEC_REQ_SIG_STRUCTURE_LEN || memcmp(msg, VEC_REQ_SIG_STRUCTURE, len) != 0) return -1;
  memcpy(sig, VEC_REQ_SIGNATURE, 64);
  return 0;
}
TEST(sign1_envelope_and_sig_structure_are_byte_identical_to_the_vector) {
  static uint8_t buf[400];
  idprov_crypto_t c;
  size_t start = 0;
  int n;
  memset(&c, 0, sizeof c);
  c.sign = stub_sign;
  n = idprov_sig_structure(buf, sizeof buf, VEC_REQ_PROTECTED, VEC_REQ_PROTECTED_LEN, VEC_REQ_BODY, VEC_REQ_BODY_LEN);
  CHECK_EQ(n, VEC_REQ_SIG_STRUCTURE_LEN);
  CHECK_MEM(buf, VEC_REQ_SIG_STRUCTURE, VEC_REQ_SIG_STRUCTURE_LEN);
  memcpy(buf + IDPROV_SIGN1_HEADROOM, VEC_REQ_BODY, VEC_REQ_BODY_LEN);
  n = idprov_sign1_wrap(&c, VEC_SEED, VEC_PK, buf, sizeof buf, VEC_REQ_BODY_LEN, &start);
  CHECK_EQ(n, VEC_REQ_UNTAGGED_LEN);
  CHECK_MEM(buf + start, VEC_REQ_UNTAGGED, VEC_REQ_UNTAGGED_LEN);
  CHECK_EQ(idprov_sign1_wrap(&c, VEC_SEED, VEC_PK, buf, IDPROV_SIGN1_HEADROOM + VEC_REQ_BODY_LEN + 65, VEC_REQ_BODY_LEN, &start),
           IDPROV_ERR_BUFFER);
}
TEST(the_shared_token_and_keyset_decode) {
  idprov_sign1_t s;
  idprov_claims_t c;
  idprov_key_t k[2];
  size_t count = 0;
  CHECK_EQ(VEC_TOKEN_LEN, VEC_TOKEN_LENGTH);
  CHECK_EQ(idprov_sign1_parse(VEC_TOKEN, VEC_TOKEN_LEN, &s), 0);
  CHECK_EQ(s.kid.len, 8);
  CHECK_MEM(s.kid.ptr, VEC_KID, 8);
  CHECK_EQ(s.payload.len, VEC_TOKEN_PAYLOAD_LEN);
  CHECK_EQ(idprov_claims_parse(s.payload.ptr, s.payload.len, &c), 0);
  CHECK_EQ(c.sub.len, strlen(VEC_ID));
  CHECK_MEM(c.cnf, VEC_PK, 32);
  CHECK_EQ(idprov_keyset_parse(VEC_KEYSET, VEC_KEYSET_LEN, k, 2, &count), 0);
  CHECK_EQ(count, 1);
  CHECK_MEM(k[0].x, VEC_SERVER_PK, 32);
  CHECK_EQ(idprov_sign1_parse(VEC_REQ_TAGGED, VEC_REQ_TAGGED_LEN, &s), 0);
  CHECK_EQ(s.kid.len, 0);
}
TEST(every_error_has_a_name) {
  int e;
  for (e = IDPROV_ERR_STATE; e <= IDPROV_E_CONTENT_FORMAT; e++) CHECK(strcmp(idprov_err_name(e), "unknown") != 0);
  CHECK(strcmp(idprov_err_name(IDPROV_E_REJECTED), "rejected") == 0);
  CHECK(strcmp(idprov_err_name(99), "unknown") == 0);
}

static const tt_test_t TESTS[] = {
  T(cbor_fixtures_decode_as_the_server_reads_them_or_are_refused), T(sign1_fixtures), T(claims_fixtures), T(keyset_fixtures),
  T(response_fixtures), T(cbor_truncated_inputs_are_refused), T(sign1_truncated_inputs_are_refused),
  T(claims_truncated_inputs_are_refused), T(keyset_truncated_inputs_are_refused), T(response_truncated_inputs_are_refused),
  T(cbor_mutations_give_only_clean_results), T(sign1_mutations_give_only_clean_results), T(claims_mutations_give_only_clean_results),
  T(keyset_mutations_give_only_clean_results), T(response_mutations_give_only_clean_results), T(coap_datagram_parses),
  T(coap_truncated_datagrams_are_refused_or_shorter_messages), T(coap_mutations_give_only_clean_results),
  T(coap_request_build_has_uri_path_content_format_and_block2), T(request_body_is_byte_identical_to_the_vector),
  T(request_body_refuses_bad_ids_and_sizes), T(refresh_body_encodes_keys_in_order),
  T(cbor_encoder_writes_shortest_heads_at_every_boundary), T(cbor_refuses_duplicate_keys_by_value), T(cbor_limits_depth_length_and_size),
  T(sign1_envelope_and_sig_structure_are_byte_identical_to_the_vector), T(the_shared_token_and_keyset_decode), T(every_error_has_a_name),
};

int main(int argc, char **argv) { return tt_main(argc, argv, TESTS, sizeof TESTS / sizeof TESTS[0]); }
