#!/usr/bin/env bash
# The longer libFuzzer run of docs/device.md: SECONDS (default 300) per decoder, two targets at a time
# at nice 19, corpora and logs in device/build/fuzz/long; prints one summary line per target.
#   bash device/fuzz/long-run.sh [SECONDS]
set -euo pipefail
secs="${1:-300}"
here="$(cd "$(dirname "$0")/.." && pwd)"
b="$here/build/fuzz"
cmake -S "$here" -B "$b" -DIDPROV_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=(cbor sign1 claims keyset response coap mdns)
cmake --build "$b" -j2 --target "${targets[@]/#/fuzz_}" >/dev/null
rm -rf "$b/seeds" && node "$here/fuzz/seed-corpus.mjs" "$here/.." "$b/seeds"
mkdir -p "$b/long"
run() {
  mkdir -p "$b/long/corpus-$1"
  set +e
  nice -n 19 "$b/fuzz_$1" -max_total_time="$secs" -print_final_stats=1 "$b/long/corpus-$1" "$b/seeds/$1" >"$b/long/$1.log" 2>&1
  echo "exit $?" >>"$b/long/$1.log"
  set -e
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  run "${targets[i]}" &
  [ -n "${targets[i + 1]:-}" ] && run "${targets[i + 1]}" &
  wait
done
node "$here/fuzz/summarize.mjs" "$b/long" "${targets[@]}"
