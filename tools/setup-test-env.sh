#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: the real peers the tests talk to
# (libcoap's coap-client, OpenSSL, avahi, mbedTLS headers, iproute2 for network namespaces,
# systemd for `systemd-analyze verify` of deploy/idprov.service), OpenSSL's
# headers for the benchmark's DTLS load generator, then the npm dependencies (npm ci builds sqlite3
# from source, ~90 s). Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
# device/ (the C library): libsodium, CMake, clang + compiler-rt (sanitizers, libFuzzer), valgrind, the
# rv32 cross compiler with picolibc and QEMU for its footprint and emulated tests; postgresql for the
# PostgreSQL store tests (test/support/postgres.ts runs its own server from these binaries; the
# Debian service it also installs is not used and may stay stopped)
PKGS=(postgresql libcoap3-bin openssl libssl-dev avahi-utils avahi-daemon dbus libmbedtls-dev iproute2 build-essential chromium util-linux mount systemd
  libsodium-dev cmake clang libclang-rt-14-dev valgrind gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
npm ci --no-audit --no-fund
