#!/usr/bin/env bash
# kvsim eval / run end to end: reference check against o_ref, determinism,
# atomic runs under signals, and one clear error line for each bad option.
set -u
BIN=${KVSIM_BIN:?}; SRC=${KVSIM_SRC:?}; TMP=${KVSIM_TMP:-/tmp}/test_eval.$$
mkdir -p "$TMP"; trap 'rm -rf "$TMP"' EXIT
SAMPLE="$SRC/traces/sample_pandas_2k.h5"
pass=0; fail=0
ok()  { echo "ok   $*"; pass=$((pass+1)); }
bad() { echo "FAIL $*"; fail=$((fail+1)); }
q()   { sqlite3 -batch -noheader "$1" "$2"; }

# 1. full attention reproduces o_ref (rel_l2 <= 1e-5 everywhere), shipped sample
if "$BIN" eval --trace "$SAMPLE" --method full --db "$TMP/a.db" --quiet --no-progress; then
  m=$(q "$TMP/a.db" "SELECT value FROM run_values WHERE name='full_vs_oref_max_rel_l2'")
  awk -v m="$m" 'BEGIN{exit !(m != "" && m <= 1e-5)}' && ok "full vs o_ref max rel_l2 $m <= 1e-5 (sample)" \
    || bad "full vs o_ref max rel_l2 '$m' (sample)"
  st=$(q "$TMP/a.db" "SELECT status FROM runs")
  [ "$st" = complete ] && ok "run status complete" || bad "run status '$st'"
else bad "kvsim eval full on the sample"; fi

# 2. the same on every shared trace (CI has ../shared)
if [ -d "${KVSIM_SHARED:-/nonexistent}/traces" ]; then
  for f in "$KVSIM_SHARED"/traces/*.h5; do
    "$BIN" eval --trace "$f" --method full --steps 0:128:16 --db "$TMP/s.db" --quiet --no-progress || { bad "eval $f"; continue; }
    m=$(q "$TMP/s.db" "SELECT value FROM run_values v JOIN runs r USING(run_id) WHERE name='full_vs_oref_max_rel_l2' AND r.trace='$f'")
    awk -v m="$m" 'BEGIN{exit !(m != "" && m <= 1e-5)}' && ok "full vs o_ref $(basename "$f"): $m" || bad "full vs o_ref $(basename "$f"): '$m'"
  done
else
  echo "SKIP shared traces: ${KVSIM_SHARED:-../shared}/traces is absent"
fi

# 3. determinism: same inputs and seed, same rows
for i in 1 2; do
  "$BIN" eval --trace "$SAMPLE" --method completion --budget-frac 0.04 --window 16 --feature-map favor --seed 7 \
    --steps 0:32:4 --db "$TMP/det$i.db" --quiet --no-progress || bad "determinism run $i"
done
d1=$(q "$TMP/det1.db" "SELECT step,layer,head,rel_l2,cosine,exact_mass,est_mass,true_resid_mass,entropy,tokens_exact FROM head_metrics ORDER BY 1,2,3" | md5sum)
d2=$(q "$TMP/det2.db" "SELECT step,layer,head,rel_l2,cosine,exact_mass,est_mass,true_resid_mass,entropy,tokens_exact FROM head_metrics ORDER BY 1,2,3" | md5sum)
n1=$(q "$TMP/det1.db" "SELECT count(*) FROM head_metrics")
[ "$d1" = "$d2" ] && [ "${n1:-0}" -gt 0 ] && ok "two identical runs give identical rows ($n1 rows)" || bad "runs differ"

# 4. bad options: one clear line, non-zero exit, nothing recorded as complete
check_bad() {
  local what=$1; shift
  out=$("$BIN" "$@" --db "$TMP/bad.db" 2>&1 >/dev/null); rc=$?
  lines=$(printf '%s\n' "$out" | grep -c .)
  if [ $rc -ne 0 ] && [ "$lines" -eq 1 ]; then ok "$what: rc=$rc: $out"; else bad "$what: rc=$rc lines=$lines: $out"; fi
}
check_bad "unknown method"      eval --trace "$SAMPLE" --method magic --budget 10
check_bad "budget 0"            eval --trace "$SAMPLE" --method topk --budget 0
check_bad "budget negative"     eval --trace "$SAMPLE" --method topk --budget -5
check_bad "features not number" eval --trace "$SAMPLE" --method completion --budget 50 --features x
check_bad "features zero"       eval --trace "$SAMPLE" --method completion --budget 50 --features 0
check_bad "layer out of range"  eval --trace "$SAMPLE" --method topk --budget 50 --layers 0,99
check_bad "steps out of range"  eval --trace "$SAMPLE" --method topk --budget 50 --steps 5000:6000
check_bad "missing trace file"  eval --trace "$TMP/none.h5" --method topk --budget 50
check_bad "not a trace"         eval --trace "$SRC/README.md" --method topk --budget 50
check_bad "unknown option"      eval --trace "$SAMPLE" --method topk --budget 50 --bogus 1
check_bad "unknown hw key"      run --trace "$SAMPLE" --method topk --budget 50 --hw "$SRC/sim/hw/h200_pcie5.cfg" --set links.nope=1
check_bad "negative bandwidth"  run --trace "$SAMPLE" --method topk --budget 50 --hw "$SRC/sim/hw/h200_pcie5.cfg" --set links.host_to_gpu.bw_bytes_per_s=-1
check_bad "missing hw file"     run --trace "$SAMPLE" --method topk --budget 50 --hw "$TMP/nohw.cfg"
c=$( [ -f "$TMP/bad.db" ] && q "$TMP/bad.db" "SELECT count(*) FROM runs WHERE status='complete'" || echo 0)
[ "$c" = 0 ] && ok "no bad run recorded as complete" || bad "$c bad runs recorded complete"

# 5. a run stopped by a signal leaves no run marked complete
big="$TMP/big.h5"
"$BIN" trace gen -o "$big" --layers 4 --heads 8 --kv-heads 2 --head-dim 64 --prefill 16384 --steps 64 --seed 3 >/dev/null 2>&1 \
  || bad "trace gen for the signal test"
for sig in INT TERM KILL; do
  "$BIN" run --trace "$big" --hw "$SRC/sim/hw/h200_pcie5.cfg" --method completion --budget-frac 0.02 \
     --db "$TMP/sig.db" --quiet --no-progress >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do   # wait until the run is recorded as running
    [ -f "$TMP/sig.db" ] && [ "$(q "$TMP/sig.db" "SELECT count(*) FROM runs WHERE status='running'" 2>/dev/null)" = 1 ] && break
    sleep 0.05
  done
  sleep 0.3
  kill -s $sig $pid 2>/dev/null; wait $pid; rc=$?
  c=$(q "$TMP/sig.db" "SELECT count(*) FROM runs WHERE status='complete'")
  [ $rc -ne 0 ] && [ "$c" = 0 ] && ok "SIG$sig: exit $rc, no complete run" || bad "SIG$sig: exit $rc, $c complete runs"
  if [ $sig != KILL ]; then
    s=$(q "$TMP/sig.db" "SELECT status FROM runs ORDER BY run_id DESC LIMIT 1")
    [ "$s" = failed ] && ok "SIG$sig: run marked failed" || bad "SIG$sig: last run is '$s'"
  fi
done

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
