#!/usr/bin/env bash
# Compile the mbedTLS 2.28 test client (Debian libmbedtls-dev) into OUT (default: a temp dir).
# Prints the path of the binary. Used by test/transport/dtls/interop.test.ts.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$(mktemp -d)}"
cc -O1 -Wall -o "$out/mbedtls-client" "$here/mbedtls-client.c" -lmbedtls -lmbedx509 -lmbedcrypto
echo "$out/mbedtls-client"
