#!/usr/bin/env bash
# A/B of the bare CoAP engine's server CPU per request: tools/bench/engine-server.ts from two trees
# (OLD, NEW) and libcoap's coap-server-notls as the same-run baseline, each loaded in turn (order
# rotated every round, its direction flipped every other round, after one uncounted warm-up run each) by get-flood.mjs at N sockets. Prints per
# round the requests/s and server CPU (utime+stime from /proc) per request, and the medians of the
# per-round ratios.   tools/bench/ab/ab-engine.sh OLD_TREE NEW_TREE [ROUNDS=7] [MS=2000] [N=16]
set -euo pipefail
old="$1"; new="$2"; rounds="${3:-7}"; ms="${4:-2000}"; conc="${5:-16}"
here="$(cd "$(dirname "$0")" && pwd)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
coap-server-notls -A 127.0.0.1 -p 25694 -v 0 >/dev/null 2>&1 & pl=$!; pids+=($pl)
sleep 1
# The engine servers answer what libcoap answers at GET / (payload and Max-Age), as scenario 1 does.
probe=$(node -e "
const s=require('dgram').createSocket('udp4');s.on('message',m=>{let i=4+(m[0]&15),num=0,ma='';while(i<m.length){const h=m[i++];if(h===0xff){console.log(m.subarray(i).toString('hex')+' '+ma);break}let d=h>>4,l=h&15;if(d===13)d=m[i++]+13;if(l===13)l=m[i++]+13;num+=d;if(num===14)ma=String(m.subarray(i,i+l).reduce((a,b)=>a*256+b,0));i+=l}process.exit(0)});s.bind(0,'127.0.0.1',()=>s.send(Buffer.from([0x41,1,0,1,7]),25694,'127.0.0.1'))")
payload=${probe%% *}; maxage=${probe#* }
start() { (cd "$1" && BENCH_PORT="$2" BENCH_PAYLOAD_HEX="$payload" BENCH_MAX_AGE="$maxage" exec node --import tsx tools/bench/engine-server.ts >/dev/null 2>&1) & pids+=($!); }
start "$old" 25690; pa=$!; start "$new" 25692; pb=$!
sleep 6
declare -A port=([old]=25690 [new]=25692 [libcoap]=25694) pid=([old]=$pa [new]=$pb [libcoap]=$pl) cur rs
names=(old new libcoap)
tick=$(getconf CLK_TCK)
for n in "${names[@]}"; do node "$here/get-flood.mjs" "${port[$n]}" "$conc" 1500 >/dev/null; done
rno=""; rnl=""; rol=""; tno=""; tnl=""
for r in $(seq 1 "$rounds"); do
  for k in 0 1 2; do
    # The cyclic order flips every other round: with one order only, NEW would always run right
    # after OLD, and that alone read ~4% in NEW's favour on identical trees.
    if (( r % 2 )); then n=${names[$(( (k + r) % 3 ))]}; else n=${names[$(( (r - k + 3) % 3 ))]}; fi
    c0=$(cpu "${pid[$n]}")
    out=$(node "$here/get-flood.mjs" "${port[$n]}" "$conc" "$ms")
    sleep 0.2
    c1=$(cpu "${pid[$n]}")
    ops=$(echo "$out" | sed -E 's/.*"ops":([0-9]+).*/\1/')
    cur[$n]=$(awk -v c=$((c1 - c0)) -v t="$tick" -v o="$ops" 'BEGIN{printf "%.2f", (o>0? c/t*1e6/o : -1)}')
    rs[$n]=$(awk -v o="$ops" -v m="$ms" 'BEGIN{printf "%.0f", o/(m/1000)}')
    echo "round $r $n req/s=${rs[$n]} cpu_us_per_req=${cur[$n]}"
  done
  rno="$rno $(awk -v a="${cur[new]}" -v b="${cur[old]}" 'BEGIN{printf "%.3f", a/b}')"
  rol="$rol $(awk -v a="${cur[libcoap]}" -v b="${cur[old]}" 'BEGIN{printf "%.3f", a/b}')"
  rnl="$rnl $(awk -v a="${cur[libcoap]}" -v b="${cur[new]}" 'BEGIN{printf "%.3f", a/b}')"
  tno="$tno $(awk -v a="${rs[new]}" -v b="${rs[old]}" 'BEGIN{printf "%.3f", a/b}')"
  tnl="$tnl $(awk -v a="${rs[new]}" -v b="${rs[libcoap]}" 'BEGIN{printf "%.3f", a/b}')"
done
med() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo "CPU per request, new/old per round:$rno (median $(echo "$rno" | med))"
echo "CPU efficiency vs libcoap (libcoap CPU/req ÷ ours): old$rol (median $(echo "$rol" | med)); new$rnl (median $(echo "$rnl" | med))"
echo "req/s new/old:$tno (median $(echo "$tno" | med)); new/libcoap:$tnl (median $(echo "$tnl" | med))"
