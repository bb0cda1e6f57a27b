#!/usr/bin/env bash
# The hardware model end to end through `kvsim run` / `kvsim hw` (issue 10
# item 2 and 6, issue 11 includes, issue 12 item 5):
#   - every value of issue 10 that broke the timing is refused with one line
#     naming the key, the value and its range, and a non-zero exit;
#   - doubling links.host_to_gpu.bw_bytes_per_s lowers a transfer-bound run's
#     step latency under the default mechanism (gather_kernel); a cap of the
#     kernel's own that binds is recorded (cap_binding_gather_kernel = 1);
#   - integer literals above 2^31 are read exactly; @include resolves from the
#     including file and a missing one is named.
set -u
BIN=${KVSIM_BIN:?}; SRC=${KVSIM_SRC:?}; TMP=${KVSIM_TMP:-/tmp}/test_hw_run.$$
mkdir -p "$TMP"; trap 'rm -rf "$TMP"' EXIT
HW="$SRC/sim/hw/h200_pcie5.cfg"
T="$SRC/traces/sample_sklearn_512.h5"
pass=0; fail=0
ok()  { echo "ok   $*"; pass=$((pass+1)); }
bad() { echo "FAIL $*"; fail=$((fail+1)); }
q()   { sqlite3 -batch -noheader "$1" "$2"; }
RUN=(--trace "$T" --hw "$HW" --model llama-3.1-8b --method topk --budget 256 --quiet --no-progress)

# 1. issue 10 values: refused at --set with key, value and range; no run recorded as complete
while read -r kv want; do
  out=$("$BIN" run "${RUN[@]}" --db "$TMP/bad.db" --set "$kv" 2>&1 >/dev/null); rc=$?
  n=$(printf '%s\n' "$out" | grep -c .)
  if [ $rc -ne 0 ] && [ "$n" -eq 1 ] && printf '%s' "$out" | grep -qF "$want"; then ok "--set $kv: $out"
  else bad "--set $kv: rc $rc, '$out' (want '$want')"; fi
done <<'EOF'
links.host_to_gpu.lat_ns=9e18 links.host_to_gpu.lat_ns = 9e+18 is out of range [0, 1e+09] ns
links.host_to_gpu.lat_ns=1e19 links.host_to_gpu.lat_ns = 1e+19 is out of range [0, 1e+09] ns
gpu.launch_ns=1e20 gpu.launch_ns = 1e+20 is out of range [0, 1e+06] ns
gpu.hbm_bw_bytes_per_s=1e-6 gpu.hbm_bw_bytes_per_s = 1e-06 is out of range [1e+09, 1e+15] B/s
links.host_to_gpu.bw_bytes_per_s=1e-300 links.host_to_gpu.bw_bytes_per_s = 1e-300 is out of range [1000, 1e+14] B/s
policy.cache_capacity_bytes=1e29 policy.cache_capacity_bytes = 1e+29 is out of range [0, 1e+15] B
EOF
if [ -f "$TMP/bad.db" ]; then
  c=$(q "$TMP/bad.db" "SELECT count(*) FROM runs WHERE status='complete'")
  [ "$c" = 0 ] && ok "no complete run from refused settings" || bad "$c complete runs from refused settings"
fi
# a cache of 1e13 B: more than the H200's HBM, an error (it aborted before)
out=$("$BIN" run "${RUN[@]}" --db "$TMP/bad.db" --set policy.cache=lru --set policy.cache_capacity_bytes=1e13 2>&1 >/dev/null); rc=$?
if [ $rc -ne 0 ] && [ $rc -lt 128 ] && printf '%s' "$out" | grep -q "GPU-resident set exceeds gpu.hbm_capacity_bytes"; then
  ok "cache 1e13 B: $out"; else bad "cache 1e13 B: rc $rc '$out'"; fi
# the slowest link allowed still finishes (no endless loop), in bounded time
timeout 120 "$BIN" run "${RUN[@]}" --db "$TMP/slow.db" --set links.host_to_gpu.bw_bytes_per_s=1e3 >/dev/null 2>"$TMP/slow.err"; rc=$?
if [ $rc -eq 124 ]; then bad "1 kB/s link: hung"
elif [ $rc -eq 0 ]; then
  m=$(q "$TMP/slow.db" "SELECT min(latency_ns) FROM step_metrics")
  awk -v m="$m" 'BEGIN{exit !(m > 0)}' && ok "1 kB/s link: complete, min step latency $m ns > 0" || bad "1 kB/s link: latency '$m'"
else
  grep -q "horizon" "$TMP/slow.err" && ok "1 kB/s link: $(cat "$TMP/slow.err")" || bad "1 kB/s link: rc $rc $(cat "$TMP/slow.err")"
fi

# 2. the link what-if (issue 12 item 5), default mechanism gather_kernel
"$BIN" run "${RUN[@]}" --db "$TMP/w.db" || bad "run at 54.5 GB/s"
"$BIN" run "${RUN[@]}" --db "$TMP/w.db" --set links.host_to_gpu.bw_bytes_per_s=109e9 || bad "run at 109 GB/s"
"$BIN" run "${RUN[@]}" --db "$TMP/w.db" --set links.host_to_gpu.bw_bytes_per_s=109e9 \
  --set gather_kernel.cap_bytes_per_s=40e9 2>"$TMP/cap.err" || bad "run with a cap"
v() { q "$TMP/w.db" "SELECT value FROM run_values WHERE run_id=$1 AND name='$2'"; }
s1=$(v 1 mean_step_ns); s2=$(v 2 mean_step_ns); s3=$(v 3 mean_step_ns)
st1=$(q "$TMP/w.db" "SELECT sum(stall_ns) FROM step_metrics WHERE run_id=1")
st2=$(q "$TMP/w.db" "SELECT sum(stall_ns) FROM step_metrics WHERE run_id=2")
b1=$(v 1 bytes_by_gather_kernel)
awk -v b="$b1" 'BEGIN{exit !(b > 1e6)}' && ok "transfer-bound: $b1 B by the gather kernel" || bad "not transfer-bound ($b1 B)"
awk -v a="$s1" -v b="$s2" 'BEGIN{exit !(b < a)}' && ok "2x host_to_gpu: mean step $s1 -> $s2 ns" || bad "2x host_to_gpu: mean step $s1 -> $s2 ns"
awk -v a="$st1" -v b="$st2" 'BEGIN{exit !(b < 0.6 * a)}' && ok "2x host_to_gpu: stall $st1 -> $st2 ns" || bad "2x host_to_gpu: stall $st1 -> $st2 ns"
[ "$(v 1 cap_binding_gather_kernel)" = 0.0 ] && ok "no cap binds by default" || bad "cap_binding_gather_kernel $(v 1 cap_binding_gather_kernel)"
[ "$(v 3 cap_binding_gather_kernel)" = 1.0 ] && ok "a 40 GB/s cap binds and is recorded" || bad "cap_binding_gather_kernel run 3: $(v 3 cap_binding_gather_kernel)"
awk -v a="$s1" -v c="$s3" 'BEGIN{exit !(c > a)}' && ok "the 40 GB/s cap is slower than 51.3 GB/s: $s3 > $s1 ns" || bad "cap: $s3 vs $s1"

# 3. libconfig integers above 2^31, includes from another folder
mkdir -p "$TMP/a" "$TMP/b"
cp -r "$SRC/sim/hw/parts" "$TMP/b/"
cat > "$TMP/a/my.cfg" <<EOF
name = "mine";
@include "../b/parts/h200_pcie5_gpu.inc"
ssd = { capacity_bytes = 5000000000; };
links = {
  @include "../b/parts/h200_pcie5_links.inc"
  @include "../b/parts/ssd_h200_virtio.inc"
};
policy = { cache = "lru"; cache_capacity_bytes = 4294967296; ssd_queue_depth = 64; };
EOF
j=$("$BIN" hw "$TMP/a/my.cfg" --json 2>&1)
printf '%s' "$j" | grep -q '"capacity_bytes":5000000000' && ok "ssd.capacity_bytes 5000000000 read exactly" || bad "5000000000: $j"
printf '%s' "$j" | grep -q '"cache_capacity_bytes":4294967296' && ok "4294967296 read exactly" || bad "4294967296: $j"
sed -i 's/ssd_queue_depth = 64/ssd_queue_depth = 4294967297/' "$TMP/a/my.cfg"
out=$("$BIN" hw "$TMP/a/my.cfg" 2>&1 >/dev/null)
printf '%s' "$out" | grep -q "my.cfg:8: policy.ssd_queue_depth = 4.29497e+09 is out of range" && ok "4294967297: $out" || bad "4294967297: $out"
sed -i 's/ssd_h200_virtio/ssd_missing/' "$TMP/a/my.cfg"
out=$("$BIN" hw "$TMP/a/my.cfg" 2>&1 >/dev/null)
printf '%s' "$out" | grep -q "my.cfg:6: cannot open included file '../b/parts/ssd_missing.inc'" && ok "missing include named: $out" || bad "missing include: $out"

# 4. kvsim hw: FILE is optional, values plain
"$BIN" hw --help | grep -q 'usage: kvsim hw \[FILE\]' && ok "hw --help: FILE optional" || bad "hw --help"
(cd "$SRC" && "$BIN" hw) | grep -q '^links.host_to_gpu.bw_bytes_per_s  *54500000000 (54.5 GB/s)' && ok "hw without FILE, plain values" || bad "hw without FILE"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
