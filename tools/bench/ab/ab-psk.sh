#!/usr/bin/env bash
# A/B of the DTLS-PSK handshake's server CPU: tools/dtls-peers/dev-server.ts from two trees (OLD, NEW)
# and libcoap's coap-server-openssl as the same-run baseline, each loaded in turn (order rotated every
# round, its direction flipped every other round) by openssl-loadgen with one PSK identity per handshake (--psk-identities). Prints, per round,
# the server CPU (utime+stime from /proc, whole run) per completed handshake, in µs, the medians, and
# the medians of the per-round ratios (the fairer figure on a loaded machine).
#   tools/bench/ab/ab-psk.sh OLD_TREE NEW_TREE [ROUNDS=5] [DURATION_MS=3000] [CONCURRENCY=16] [IDENTITIES=1000]
set -euo pipefail
old="$1"; new="$2"; rounds="${3:-5}"; dur="${4:-3000}"; conc="${5:-16}"; ids="${6:-1000}"
here="$(cd "$(dirname "$0")/../../dtls-peers" && pwd)"
tmp="$(mktemp -d)"; lg="$(bash "$here/build-loadgen.sh" "$tmp")"
key="$(printf secretsecret12 | od -An -tx1 | tr -d ' \n')"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
start_dev() { (cd "$1" && PSK_PREFIX=dev LVL=warn PORT="$2" exec node --import tsx tools/dtls-peers/dev-server.ts >"$tmp/$2.out" 2>&1) & pids+=($!); }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
start_dev "$old" 25684; pa=$!; start_dev "$new" 25686; pb=$!
coap-server-openssl -A 127.0.0.1 -p 25687 -v 0 -k secretsecret12 -n >/dev/null 2>&1 & pl=$!; pids+=($pl)
sleep 6
declare -A port=([old]=25684 [new]=25686 [libcoap]=25688) pid=([old]=$pa [new]=$pb [libcoap]=$pl)
declare -A res cur
rno=""; rnl=""; rol=""
names=(old new libcoap)
tick=$(getconf CLK_TCK)
for n in "${names[@]}"; do # warm-up (JIT, caches), not counted
  "$lg" --host 127.0.0.1 --port "${port[$n]}" --concurrency "$conc" --warmup-ms 0 --duration-ms 1500 --max-ops 1000000 --psk dev "$key" --psk-identities "$ids" --suite 0xC0A8 >/dev/null 2>&1
done
for r in $(seq 1 "$rounds"); do
  for k in 0 1 2; do
    # The cyclic order flips every other round: with one order only, NEW would always run right
    # after OLD, and that alone read ~4% in NEW's favour on identical trees.
    if (( r % 2 )); then n=${names[$(( (k + r) % 3 ))]}; else n=${names[$(( (r - k + 3) % 3 ))]}; fi
    c0=$(cpu "${pid[$n]}")
    out=$("$lg" --host 127.0.0.1 --port "${port[$n]}" --concurrency "$conc" --warmup-ms 0 --duration-ms "$dur" --max-ops 1000000 --psk dev "$key" --psk-identities "$ids" --suite 0xC0A8 2>/dev/null | tail -1)
    sleep 0.3
    c1=$(cpu "${pid[$n]}")
    ops=$(echo "$out" | sed -E 's/.*"ops":([0-9]+).*/\1/')
    us=$(awk -v c=$((c1 - c0)) -v t="$tick" -v o="$ops" 'BEGIN{printf "%.1f", (o>0? c/t*1e6/o : -1)}')
    res[$n]="${res[$n]:-} $us"; cur[$n]=$us
    echo "round $r $n ops=$ops cpu_us_per_hs=$us"
  done
  rno="$rno $(awk -v a="${cur[new]}" -v b="${cur[old]}" 'BEGIN{printf "%.3f", a/b}')"
  rnl="$rnl $(awk -v a="${cur[new]}" -v b="${cur[libcoap]}" 'BEGIN{printf "%.3f", a/b}')"
  rol="$rol $(awk -v a="${cur[old]}" -v b="${cur[libcoap]}" 'BEGIN{printf "%.3f", a/b}')"
done
med() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
mo=$(echo "${res[old]}" | med); mn=$(echo "${res[new]}" | med); ml=$(echo "${res[libcoap]}" | med)
echo "median µs CPU/handshake: old $mo, new $mn, libcoap $ml; new/old $(awk -v a="$mn" -v b="$mo" 'BEGIN{printf "%.3f", a/b}'); old/libcoap $(awk -v a="$mo" -v b="$ml" 'BEGIN{printf "%.2f", a/b}'); new/libcoap $(awk -v a="$mn" -v b="$ml" 'BEGIN{printf "%.2f", a/b}')"
echo "per-round new/old:$rno (median $(echo "$rno" | med))"
echo "per-round old/libcoap:$rol (median $(echo "$rol" | med)); new/libcoap:$rnl (median $(echo "$rnl" | med))"
