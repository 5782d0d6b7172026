/* Names of idprov_err_t values (the server's err names as in docs/protocol.md). */
#include "idprov.h"

const char *idprov_err_name(int err) {
  static const char *const srv[] = {"ok", "malformed", "bad-signature", "nonce", "key-mismatch", "mac-mismatch",
                                    "rejected", "revoked", "token-expired", "rate-limited", "disabled",
                                    "oob-mismatch", "unknown-token-key", "too-large", "unsupported-content-format"};
  static const char *const loc[] = {"decode", "buffer", "argument", "crypto", "transport", "timeout", "storage",
                                    "protocol", "token-mismatch", "not-found", "pending", "state"};
  if (err >= 0 && err <= IDPROV_E_CONTENT_FORMAT) return srv[err];
  if (err < 0 && err >= IDPROV_ERR_STATE) return loc[-err - 1];
  return "unknown";
}
