/*
 * idprov device library — public API (idprov/coap v1).
 *
 * C99, no heap, no globals. Everything the library holds lives in one caller-owned
 * context (idprov_ctx_t) and in buffers the caller hands in. The outside world is reached
 * through five ports, each a struct of function pointers with a user pointer:
 * crypto, transport, storage, clock and random. docs/device.md is the guide.
 *
 * Layers (one concern per file under device/src/):
 *   cbor.c      deterministic CBOR subset encoder, strict bounded decoder
 *   cose.c      COSE_Sign1 build (Sig_structure) and parse, COSE_KeySet parse
 *   messages.c  request/refresh body build, response parse, CWT claims parse
 *   token.c     sealed-token open, optional token verification, fingerprint
 *   coap.c      CoAP message codec (RFC 7252) and the CON client with Block2 (RFC 7959)
 *   machine.c   the provisioning state machine and idprov_provision()
 */
#ifndef IDPROV_H
#define IDPROV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/**
 * Every result of the library.
 *
 * 0 is success. Positive values 1..12 are exactly the `err` numbers of the wire contract
 * (response key 15; docs/protocol.md "Errors"), so a server refusal is reported with the
 * number the server sent; 13 and 14 are the two refusals the contract gives no `err` of their own
 * (4.13, 4.15: reported by CoAP code, whatever err their body holds). Negative values are local
 * failures of the device side.
 */
typedef enum {
  IDPROV_OK = 0,

  /* --- the server's refusals: response key 15 `err` (docs/device.md "Errors") --- */
  IDPROV_E_MALFORMED = 1,          /**< 4.00: the server could not decode our request. A bug: report it. */
  IDPROV_E_BAD_SIGNATURE = 2,      /**< 4.01: signature did not verify. Check the key file is the approved one. */
  IDPROV_E_NONCE = 3,              /**< 4.01: no/expired/used nonce. Handled inside: re-signed with the fresh nonce. */
  IDPROV_E_KEY_MISMATCH = 4,       /**< 4.03: our key differs from the allowlisted/provisioned one. Needs an admin. */
  IDPROV_E_MAC_MISMATCH = 5,       /**< 4.03: the allowlist holds another MAC (or we sent none). */
  IDPROV_E_REJECTED = 6,           /**< 4.03: an admin rejected this ID. Terminal; wait `retry` (3600 s) at least. */
  IDPROV_E_REVOKED = 7,            /**< 4.03: an admin revoked this device. Terminal until re-approved. */
  IDPROV_E_TOKEN_EXPIRED = 8,      /**< 4.03 on refresh: the token expired. Provision again. */
  IDPROV_E_RATE_LIMITED = 9,       /**< 4.29: back off `retry` seconds (also Max-Age). */
  IDPROV_E_DISABLED = 10,          /**< 5.03: provisioning switched off. Wait `retry`, try again. */
  IDPROV_E_OOB_MISMATCH = 11,      /**< 4.01: the out-of-band secret was not proven (wrong or missing secret). */
  IDPROV_E_UNKNOWN_TOKEN_KEY = 12, /**< 4.03 on refresh: token signed by a key the server no longer has. Provision again. */
  IDPROV_E_TOO_LARGE = 13,         /**< 4.13: request payload over 1024 bytes (no `err` on the wire). */
  IDPROV_E_CONTENT_FORMAT = 14,    /**< 4.15: Content-Format not 18 (no `err` on the wire). */

  /* --- local failures --- */
  IDPROV_ERR_DECODE = -1,          /**< bytes from the peer do not decode in the strict subset (see cbor.c). */
  IDPROV_ERR_BUFFER = -2,          /**< a caller buffer is too small. */
  IDPROV_ERR_ARG = -3,             /**< an argument is invalid (NULL, bad ID, bad URI, missing port). */
  IDPROV_ERR_CRYPTO = -4,          /**< the crypto port failed, a signature or a sealed box did not verify. */
  IDPROV_ERR_TRANSPORT = -5,       /**< socket/DTLS failure. Retry later. */
  IDPROV_ERR_TIMEOUT = -6,         /**< no answer after the CON retransmissions (RFC 7252 §4.2). */
  IDPROV_ERR_STORAGE = -7,         /**< the storage port failed. */
  IDPROV_ERR_PROTOCOL = -8,        /**< the server answered outside the contract (unexpected code or body). */
  IDPROV_ERR_TOKEN_MISMATCH = -9,  /**< the token's sub/cnf are not ours: do not use it. */
  IDPROV_ERR_NOT_FOUND = -10,      /**< storage item or key (kid) not present. */
  IDPROV_ERR_PENDING = -11,        /**< still pending when the caller's wait budget ran out. */
  IDPROV_ERR_STATE = -12           /**< a call not allowed in the current state (e.g. refresh without token). */
} idprov_err_t;

/** A short stable name for an error ("rejected", "nonce", "timeout", ...). Never NULL. */
const char *idprov_err_name(int err);

/* ------------------------------------------------------------------------------------------ */
/* Sizes and limits                                                                             */
/* ------------------------------------------------------------------------------------------ */

#define IDPROV_ID_MAX 64          /**< device ID: 1..64 bytes of [A-Za-z0-9._:-] */
#define IDPROV_NONCE_MAX 32       /**< server nonce: 8..32 bytes */
#define IDPROV_NONCE_MIN 8
#define IDPROV_TOKEN_MAX 512      /**< tokens presented to refresh are at most 512 bytes */
#define IDPROV_KID_LEN 8
#define IDPROV_REQUEST_MAX 1024   /**< a request payload over 1024 bytes gets 4.13 */

#ifndef IDPROV_CBOR_MAX_DEPTH
#define IDPROV_CBOR_MAX_DEPTH 8   /**< nesting of arrays/maps/tags the decoder follows (v1 needs 4) */
#endif
#ifndef IDPROV_CBOR_MAX_ITEM
#define IDPROV_CBOR_MAX_ITEM 4096 /**< largest input the decoder accepts */
#endif
#ifndef IDPROV_CBOR_MAX_MAP
#define IDPROV_CBOR_MAX_MAP 32    /**< entries of one map (keeps the duplicate check bounded) */
#endif
#ifndef IDPROV_CBOR_MAX_ARRAY
#define IDPROV_CBOR_MAX_ARRAY 64  /**< items of one array */
#endif

/** A borrowed byte range (points into a caller buffer; never owned). */
typedef struct {
  const uint8_t *ptr;
  size_t len;
} idprov_bytes_t;

/* ------------------------------------------------------------------------------------------ */
/* CBOR (cbor.c)                                                                                */
/* ------------------------------------------------------------------------------------------ */

/** Encoder over a caller buffer. On overflow `err` becomes IDPROV_ERR_BUFFER and stays. */
typedef struct {
  uint8_t *buf;
  size_t cap;
  size_t len;
  int err;
} idprov_cbor_enc_t;

void idprov_cbor_enc_init(idprov_cbor_enc_t *e, uint8_t *buf, size_t cap);
/** Writes a head (major type 0..7, argument) in shortest form (RFC 8949 §4.2.1). */
void idprov_cbor_put_head(idprov_cbor_enc_t *e, uint8_t major, uint64_t arg);
void idprov_cbor_put_uint(idprov_cbor_enc_t *e, uint64_t v);
void idprov_cbor_put_int(idprov_cbor_enc_t *e, int64_t v);
void idprov_cbor_put_bytes(idprov_cbor_enc_t *e, const uint8_t *p, size_t n);
void idprov_cbor_put_text(idprov_cbor_enc_t *e, const char *p, size_t n);
void idprov_cbor_put_array(idprov_cbor_enc_t *e, size_t n);
void idprov_cbor_put_map(idprov_cbor_enc_t *e, size_t n);

/** CBOR major types. */
enum { IDPROV_CBOR_UINT = 0, IDPROV_CBOR_NINT = 1, IDPROV_CBOR_BYTES = 2, IDPROV_CBOR_TEXT = 3,
       IDPROV_CBOR_ARRAY = 4, IDPROV_CBOR_MAP = 5, IDPROV_CBOR_TAG = 6, IDPROV_CBOR_SIMPLE = 7 };

/** Decoder cursor over borrowed bytes. */
typedef struct {
  const uint8_t *p;
  const uint8_t *end;
} idprov_cbor_dec_t;

/** One decoded head: major type and argument; for strings `ptr` is the content. */
typedef struct {
  uint8_t major;
  uint64_t arg;
  const uint8_t *ptr;  /**< strings: the content; other types: the item's first byte */
  const uint8_t *start;/**< the item's first byte (its head) */
} idprov_cbor_item_t;

void idprov_cbor_dec_init(idprov_cbor_dec_t *d, const uint8_t *p, size_t n);
/**
 * Reads one head (and, for strings, steps over the content). Refuses: non-shortest heads,
 * additional information 28..31 (indefinite lengths, reserved), floats, simple values other than
 * false/true/null, lengths past the input.
 */
int idprov_cbor_next(idprov_cbor_dec_t *d, idprov_cbor_item_t *it);
/**
 * Validates and steps over one whole item (arrays, maps and tags included): the idprov subset,
 * depth ≤ IDPROV_CBOR_MAX_DEPTH, map ≤ IDPROV_CBOR_MAX_MAP entries without duplicate keys,
 * arrays ≤ IDPROV_CBOR_MAX_ARRAY, tags only 18.
 */
int idprov_cbor_skip(idprov_cbor_dec_t *d, unsigned depth);
/** Validates that `p[0..n)` is exactly one well-formed item of the subset (nothing after it). */
int idprov_cbor_check(const uint8_t *p, size_t n);

/* ------------------------------------------------------------------------------------------ */
/* COSE (cose.c)                                                                                */
/* ------------------------------------------------------------------------------------------ */

/** A parsed COSE_Sign1 (RFC 9052 §4.2); every range points into the input. */
typedef struct {
  idprov_bytes_t protected_hdr; /**< the protected header bstr content, as received */
  idprov_bytes_t payload;
  idprov_bytes_t signature;     /**< 64 bytes */
  idprov_bytes_t kid;           /**< protected key 4 when present (else len 0) */
} idprov_sign1_t;

/** Parses a COSE_Sign1, tag 18 optional; protected header must hold alg -8 (EdDSA). */
int idprov_sign1_parse(const uint8_t *p, size_t n, idprov_sign1_t *out);

/**
 * Writes the Sig_structure ["Signature1", protected, h'', payload] (RFC 9052 §4.4) into buf.
 * Returns its length, or a negative idprov_err_t.
 */
int idprov_sig_structure(uint8_t *buf, size_t cap, const uint8_t *prot, size_t prot_len,
                         const uint8_t *payload, size_t payload_len);

/** One key of a COSE_KeySet: kid (8 bytes) and the raw Ed25519 public key. */
typedef struct {
  uint8_t kid[IDPROV_KID_LEN];
  uint8_t x[32];
} idprov_key_t;

/**
 * Parses the COSE_KeySet of /idprov/keys: [{1: 1, 2: kid, 3: -8?, -1: 6, -2: x}, ...].
 * Stores up to `cap` keys in order (newest first); `*count` gets the number in the set.
 */
int idprov_keyset_parse(const uint8_t *p, size_t n, idprov_key_t *keys, size_t cap, size_t *count);

/* ------------------------------------------------------------------------------------------ */
/* Messages (messages.c)                                                                        */
/* ------------------------------------------------------------------------------------------ */

/** What goes into a request body (/idprov/request, docs/spec/idprov-coap-v1.md §2). NULL / 0 = absent. */
typedef struct {
  const char *id;               /**< NUL-terminated device ID */
  const uint8_t *pk;            /**< 32 bytes */
  const uint8_t *mac; size_t mac_len;     /**< 6 or 8 */
  const uint8_t *nonce; size_t nonce_len; /**< 8..32 */
  unsigned type;                /**< 0 device (omitted), 1 service, 2 consumer */
  const uint8_t *xk;            /**< 32 bytes X25519 public key: seal the token */
  const uint8_t *oob;           /**< 32 bytes HMAC proof */
} idprov_request_body_t;

/** What goes into a refresh body (/idprov/refresh). */
typedef struct {
  const char *id;
  const uint8_t *nonce; size_t nonce_len;
  const uint8_t *xk;
  const uint8_t *token; size_t token_len;
} idprov_refresh_body_t;

/** Encodes a request body in core deterministic CBOR; returns its length or an error. */
int idprov_request_body_build(const idprov_request_body_t *b, uint8_t *buf, size_t cap);
/** Encodes a refresh body in core deterministic CBOR; returns its length or an error. */
int idprov_refresh_body_build(const idprov_refresh_body_t *b, uint8_t *buf, size_t cap);
/** True when `id` is 1..64 bytes of [A-Za-z0-9._:-]. */
int idprov_id_valid(const char *id);

/** Presence bits of idprov_response_t. */
enum {
  IDPROV_R_STATUS = 1u << 0, IDPROV_R_NONCE = 1u << 4, IDPROV_R_TOKEN = 1u << 8, IDPROV_R_EXP = 1u << 9,
  IDPROV_R_RETRY = 1u << 10, IDPROV_R_TTL = 1u << 11, IDPROV_R_DIAG = 1u << 12, IDPROV_R_SEALED = 1u << 13,
  IDPROV_R_HUB = 1u << 14, IDPROV_R_ERR = 1u << 15
};

/** A parsed response body (docs/spec/idprov-coap-v1.md §4); ranges point into the input. */
typedef struct {
  uint32_t has;            /**< IDPROV_R_* bits */
  unsigned status;         /**< 0 approved, 1 pending, 2 rejected */
  idprov_bytes_t nonce;
  idprov_bytes_t token;
  uint64_t exp, retry, ttl, err;
  idprov_bytes_t diag, hub;
  idprov_bytes_t epk, box_nonce, box;   /**< key 13 [epk 32, nonce 24, box] */
} idprov_response_t;

/** Parses a response body; unknown keys are skipped (inside the subset). */
int idprov_response_parse(const uint8_t *p, size_t n, idprov_response_t *out);

/** A parsed CWT claim set (docs/spec/idprov-coap-v1.md §5). */
typedef struct {
  idprov_bytes_t iss, sub, aud, role, cti;
  uint64_t exp, iat;
  uint8_t cnf[32];         /**< the key the token is bound to */
  int has_aud, has_role;
} idprov_claims_t;

int idprov_claims_parse(const uint8_t *p, size_t n, idprov_claims_t *out);

/* ------------------------------------------------------------------------------------------ */
/* Ports                                                                                        */
/* ------------------------------------------------------------------------------------------ */

/** Crypto port: libsodium on host and ESP-IDF (port_sodium.c), or a secure element. Return 0 on success. */
typedef struct {
  void *user;
  /** Ed25519 detached signature with the device key (seed = RFC 8032 private key). */
  int (*sign)(void *user, uint8_t sig[64], const uint8_t *msg, size_t len, const uint8_t seed[32], const uint8_t pk[32]);
  /** Ed25519 verify: 0 when valid. */
  int (*verify)(void *user, const uint8_t sig[64], const uint8_t *msg, size_t len, const uint8_t pk[32]);
  /** NaCl crypto_box_open_easy: out gets box_len - 16 bytes; 0 when authentic. */
  int (*box_open)(void *user, uint8_t *out, const uint8_t *box, size_t box_len, const uint8_t nonce[24],
                  const uint8_t epk[32], const uint8_t sk[32]);
  void (*sha256)(void *user, uint8_t out[32], const uint8_t *msg, size_t len);
  void (*hmac_sha256)(void *user, uint8_t out[32], const uint8_t *key, size_t key_len, const uint8_t *msg, size_t len);
  /** Derives public keys: Ed25519 pk from seed, X25519 pk from sk. */
  int (*derive)(void *user, uint8_t ed_pk[32], const uint8_t seed[32], uint8_t x_pk[32], const uint8_t x_sk[32]);
} idprov_crypto_t;

/** Random port: fills buf with unpredictable bytes (message IDs, CoAP tokens, jitter). */
typedef struct {
  void *user;
  int (*fill)(void *user, uint8_t *buf, size_t len);
} idprov_random_t;

/** Clock port. epoch_s may return 0 when the device has no wall clock (then ttl is used). */
typedef struct {
  void *user;
  uint64_t (*now_ms)(void *user);   /**< monotonic milliseconds */
  uint64_t (*epoch_s)(void *user);  /**< seconds since 1970, or 0 when unknown */
  void (*sleep_ms)(void *user, uint32_t ms);
} idprov_clock_t;

/** Storage items. */
typedef enum {
  IDPROV_ITEM_KEY = 0,     /**< 64 bytes: Ed25519 seed ‖ X25519 secret */
  IDPROV_ITEM_TOKEN = 1,   /**< the raw CWT, as issued */
  IDPROV_ITEM_SERVER = 2,  /**< kid (8) ‖ fp (32, SHA-256 of the DTLS SPKI, all zero when unknown) */
  IDPROV_ITEM_TOKEN_META = 3 /**< 16 bytes: exp (u64 BE) ‖ ttl (u64 BE) */
} idprov_item_t;

/** Storage port (NVS on ESP-IDF, files on the host). Return 0, IDPROV_ERR_NOT_FOUND or an error. */
typedef struct {
  void *user;
  int (*load)(void *user, idprov_item_t item, uint8_t *buf, size_t cap, size_t *len);
  int (*store)(void *user, idprov_item_t item, const uint8_t *buf, size_t len);
  int (*erase)(void *user, idprov_item_t item);
} idprov_storage_t;

/** CoAP methods and codes as (class << 5 | detail). */
enum { IDPROV_COAP_GET = 1, IDPROV_COAP_POST = 2 };
#define IDPROV_COAP_CODE(c, d) ((uint8_t)(((c) << 5) | (d)))

/** One request handed to the transport port. */
typedef struct {
  uint8_t method;
  const char *path;          /**< "/idprov/request" */
  int content_format;        /**< -1: none */
  const uint8_t *payload;
  size_t payload_len;
} idprov_coap_req_t;

/** One response from the transport port; payload is reassembled (Block2) into the caller buffer. */
typedef struct {
  uint8_t code;              /**< e.g. IDPROV_COAP_CODE(2, 1) */
  int content_format;        /**< -1 when absent */
  uint32_t max_age;          /**< Max-Age option, 60 when absent (RFC 7252 §5.10.5) */
  uint8_t *buf;              /**< caller buffer */
  size_t cap;
  size_t len;
} idprov_coap_resp_t;

/** Transport port: one confirmable exchange (CoAP over UDP or DTLS: coap.c / port_*.c). */
typedef struct {
  void *user;
  int (*exchange)(void *user, const idprov_coap_req_t *req, idprov_coap_resp_t *resp);
} idprov_transport_t;

/* ------------------------------------------------------------------------------------------ */
/* CoAP client over a datagram socket (coap.c)                                                  */
/* ------------------------------------------------------------------------------------------ */

/** A connected datagram channel: a UDP socket (port_socket.c) or a DTLS session (port_dtls.c). */
typedef struct {
  void *user;
  int (*send)(void *user, const uint8_t *buf, size_t len);
  /** Returns the length received, IDPROV_ERR_TIMEOUT after timeout_ms, or another error. */
  int (*recv)(void *user, uint8_t *buf, size_t cap, uint32_t timeout_ms);
} idprov_dgram_t;

/** RFC 7252 §4.8 transmission parameters (defaults: 2000 ms, 1.5, 4). */
typedef struct {
  uint32_t ack_timeout_ms;
  uint16_t ack_random_factor_x1000; /**< 1500 = 1.5 */
  uint8_t max_retransmit;
  uint8_t block2_szx;               /**< 0..6: ask for 2^(szx+4)-byte blocks; 7 = let the server choose */
} idprov_coap_params_t;

/** The CoAP client: implements idprov_transport_t.exchange over an idprov_dgram_t. */
typedef struct {
  idprov_dgram_t dgram;
  idprov_random_t random;
  idprov_clock_t clock;
  idprov_coap_params_t params;
  uint16_t next_mid;
  uint8_t *io;        /**< datagram scratch buffer (caller-owned), ≥ 1152 bytes for 1024-byte blocks */
  size_t io_cap;
  uint32_t retransmissions; /**< statistics: CON retransmissions sent */
  uint32_t datagrams_out, datagrams_in, bytes_out, bytes_in;
} idprov_coap_client_t;

void idprov_coap_params_default(idprov_coap_params_t *p);
int idprov_coap_client_init(idprov_coap_client_t *c, const idprov_dgram_t *dgram, const idprov_random_t *rnd,
                            const idprov_clock_t *clk, uint8_t *io, size_t io_cap);
/** Use as idprov_transport_t{ .user = client, .exchange = idprov_coap_exchange }. */
int idprov_coap_exchange(void *client, const idprov_coap_req_t *req, idprov_coap_resp_t *resp);

/** A decoded CoAP message (header, the options the client reads, payload). */
typedef struct {
  uint8_t type, code, tkl;
  uint16_t mid;
  uint8_t token[8];
  int content_format;
  uint32_t max_age;
  int has_block2;
  uint32_t block2;    /**< raw Block2 value: num << 4 | m << 3 | szx */
  const uint8_t *payload;
  size_t payload_len;
} idprov_coap_msg_t;

/** Parses a datagram; unknown elective options are skipped, unknown critical ones refused. */
int idprov_coap_parse(const uint8_t *p, size_t n, idprov_coap_msg_t *m);
/** Encodes a request datagram: type, mid, token, Uri-Path from `path`, Content-Format, Block2. */
int idprov_coap_build(uint8_t *buf, size_t cap, uint8_t type, uint8_t code, uint16_t mid, const uint8_t *token,
                      uint8_t tkl, const char *path, int content_format, int64_t block2, const uint8_t *payload,
                      size_t payload_len);

/* ------------------------------------------------------------------------------------------ */
/* Tokens and keys (token.c)                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** Size of a fingerprint buffer: "XXXX-XXXX-XXXX-XXXX" and its NUL. */
#define IDPROV_FINGERPRINT_SIZE 20
/**
 * Fingerprint of an Ed25519 key as admins see it and compare it with the device's label:
 * "XXXX-XXXX-XXXX-XXXX", Crockford base32 (0-9 A-Z without I L O U) of SHA-256(pk)[0..10]
 * (docs/spec/idprov-coap-v1.md §5). The server, oob, device-sim and the console show the same.
 */
int idprov_fingerprint(const idprov_crypto_t *c, const uint8_t pk[32], char out[IDPROV_FINGERPRINT_SIZE]);
/** The kid rule: first 8 bytes of SHA-256 over the raw 32-byte public key. */
void idprov_kid_of(const idprov_crypto_t *c, const uint8_t pk[32], uint8_t kid[IDPROV_KID_LEN]);
/**
 * Opens a sealed token (response key 13) into `out`: crypto_box_open(box, nonce, epk, x25519 sk).
 * Returns the token length or an error.
 */
int idprov_token_unseal(const idprov_crypto_t *c, const idprov_response_t *r, const uint8_t xsk[32], uint8_t *out,
                        size_t cap);
/**
 * Verifies a token: COSE_Sign1 parse, kid looked up in `keys`, Ed25519 over the Sig_structure (built in
 * `scratch`), claims parsed into `claims`. IDPROV_ERR_NOT_FOUND for an unknown kid, IDPROV_ERR_CRYPTO for
 * a bad signature. Pass keys = NULL to parse the claims without verifying.
 */
int idprov_token_verify(const idprov_crypto_t *c, const uint8_t *tok, size_t tok_len, const idprov_key_t *keys,
                        size_t nkeys, uint8_t *scratch, size_t scratch_cap, idprov_claims_t *claims);

/* ------------------------------------------------------------------------------------------ */
/* The state machine (machine.c)                                                                */
/* ------------------------------------------------------------------------------------------ */

/** Where the device stands. */
typedef enum {
  IDPROV_ST_START = 0,      /**< nothing sent yet (or a new nonce is needed) */
  IDPROV_ST_CHALLENGED,     /**< holding a server nonce: the next POST is signed with it */
  IDPROV_ST_PENDING,        /**< 2.05: waiting for an admin; `wait_s` says when to ask again */
  IDPROV_ST_BACKOFF,        /**< 4.29 rate limited: wait `wait_s` */
  IDPROV_ST_DISABLED,       /**< 5.03 provisioning off: wait `wait_s` */
  IDPROV_ST_REFUSED,        /**< 4.03 / terminal 4.01: `last_err` says why; no automatic retry */
  IDPROV_ST_PROVISIONED     /**< a token is held and stored */
} idprov_state_t;

/** What the application should do after a step. */
typedef enum {
  IDPROV_NEXT_AGAIN = 0,   /**< call idprov_step() again now (e.g. after a 4.01 challenge) */
  IDPROV_NEXT_WAIT,        /**< sleep ctx->wait_s seconds (deep sleep is fine), then step */
  IDPROV_NEXT_DONE,        /**< provisioned (or refreshed); refresh after idprov_refresh_in_s() */
  IDPROV_NEXT_STOP         /**< terminal refusal or local error in ctx->last_err */
} idprov_next_t;

/** Events reported by the last step (bits). */
enum {
  IDPROV_EV_KID_CHANGED = 1u << 0,  /**< the server's token key (kid) differs from the one remembered */
  IDPROV_EV_FP_CHANGED = 1u << 1,   /**< the DTLS certificate fingerprint from discovery changed */
  IDPROV_EV_SEALED = 1u << 2,       /**< the token came sealed and was opened */
  IDPROV_EV_VERIFIED = 1u << 3,     /**< the token was verified against /idprov/keys */
  IDPROV_EV_KEYS_FETCHED = 1u << 4
};

/** Configuration (set before idprov_init; pointers must outlive the context). */
typedef struct {
  const char *id;           /**< device ID */
  const uint8_t *mac; size_t mac_len;
  const uint8_t *oob_secret; size_t oob_secret_len; /**< printed secret, proven in key 7 (NULL: none) */
  unsigned type;            /**< 0 device, 1 service, 2 consumer */
  int seal;                 /**< send xk and expect key 13 */
  int verify_token;         /**< fetch /idprov/keys and verify the token's signature */
  int psk_session;          /**< the transport is a DTLS-PSK session as `id`: no key 7 needed */
} idprov_config_t;

#ifndef IDPROV_MAX_KEYS
#define IDPROV_MAX_KEYS 4   /**< server keys kept from /idprov/keys */
#endif

/** The one context. Caller-owned, no heap; ~1.3 KB with the default limits plus caller buffers. */
typedef struct {
  idprov_config_t cfg;
  idprov_crypto_t crypto;
  idprov_transport_t transport;
  idprov_storage_t storage;
  idprov_clock_t clock;
  idprov_random_t random;

  /* caller buffers */
  uint8_t *tx; size_t tx_cap;   /**< request build: ≥ 400 bytes (refresh carries the token) */
  uint8_t *rx; size_t rx_cap;   /**< response: ≥ 600 bytes */

  /* device keys (from storage) */
  uint8_t seed[32], pk[32], xsk[32], xpk[32];

  /* protocol state */
  idprov_state_t state;
  uint8_t nonce[IDPROV_NONCE_MAX]; size_t nonce_len;
  uint32_t wait_s;              /**< with IDPROV_NEXT_WAIT: seconds to wait */
  int last_err;                 /**< idprov_err_t of the last step */
  uint8_t last_code;            /**< CoAP code of the last response */
  uint32_t attempts;            /**< POSTs sent in this flow */
  uint32_t events;              /**< IDPROV_EV_* of the last step */

  /* token */
  uint8_t token[IDPROV_TOKEN_MAX]; size_t token_len;
  uint64_t token_exp, token_ttl;
  uint64_t token_got_ms;        /**< monotonic time the token arrived */
  int token_got_known;          /**< 0 after a reboot: then exp and the wall clock decide */

  /* server */
  idprov_key_t keys[IDPROV_MAX_KEYS]; size_t nkeys;
  uint8_t kid[IDPROV_KID_LEN];  /**< remembered kid (of the current token key) */
  uint8_t fp[32];               /**< remembered DTLS fingerprint (all zero = unknown) */
  int have_server;
} idprov_ctx_t;

/**
 * Initialises the context: loads (or, with create=1, generates via the random port and stores) the
 * device key, the stored token and the remembered server kid/fp. Ports and buffers must be set first.
 */
int idprov_init(idprov_ctx_t *ctx, int create_key);
/** One exchange of the provisioning flow (POST /idprov/request) and what to do next. */
idprov_next_t idprov_step(idprov_ctx_t *ctx);
/** One exchange of the refresh flow (POST /idprov/refresh). */
idprov_next_t idprov_refresh_step(idprov_ctx_t *ctx);
/** GET /idprov/keys into ctx->keys; reports IDPROV_EV_KID_CHANGED against the remembered kid. */
int idprov_fetch_keys(idprov_ctx_t *ctx);
/** Seconds until the held token should be refreshed (half its life); 0 = now. */
uint64_t idprov_refresh_in_s(const idprov_ctx_t *ctx);
/**
 * Tells the library the kid/fp a discovery answer advertised (TXT kid=, fp=); remembers them in
 * storage and sets IDPROV_EV_KID_CHANGED / IDPROV_EV_FP_CHANGED when they differ from what was stored.
 */
int idprov_server_seen(idprov_ctx_t *ctx, const uint8_t *kid, const uint8_t *fp);

/**
 * Blocking convenience: steps until provisioned, refused, or until `max_wait_s` seconds of
 * pending/back-off waiting have been spent (0: do not wait at all; return IDPROV_ERR_PENDING).
 * Sleeps through the clock port. Returns IDPROV_OK or the error.
 */
int idprov_provision(idprov_ctx_t *ctx, uint32_t max_wait_s);
/** Blocking refresh: 4.01 challenge handled; on token-expired/unknown-token-key the token is dropped. */
int idprov_refresh(idprov_ctx_t *ctx);

#ifdef __cplusplus
}
#endif
#endif /* IDPROV_H */
