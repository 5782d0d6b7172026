#!/usr/bin/env bash
# Compile the OpenSSL 3 DTLS handshake load generator (Debian libssl-dev) into OUT (default: a temp
# dir). Prints the path of the binary. Used by the benchmark (tools/bench/lib/cload.ts, scenario 4).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$(mktemp -d)}"
cc -O2 -Wall -o "$out/openssl-loadgen" "$here/openssl-loadgen.c" -lssl -lcrypto -lpthread -lm
echo "$out/openssl-loadgen"
