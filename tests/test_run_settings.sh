#!/usr/bin/env bash
# test_run_settings.sh — settings that mean what they say (issue 11) and runs
# that never end 'complete' on bad data (issue 10), for kvsim eval / run:
#   - one source of truth: --page reaches policy.page_tokens; page/anchors
#     given twice with different values are errors naming both;
#   - exclusive budgets refused on the command line; a budget past the
#     context is clamped, warned about and recorded (budget_clamped=1);
#   - the summary names what was run and prints MB as plain numbers; no
#     duplicated run_values;
#   - 300-layer traces (the old fixed int layers[256] overflowed);
#   - NaN / overflow / wrong o_ref / never-written K: failed, never complete;
#     --allow-nonfinite marks the rows instead;
#   - the library installs no signal handlers (the CLI does).
set -u
BIN=${KVSIM_BIN:?}; SRC=${KVSIM_SRC:?}; TMP=${KVSIM_TMP:-/tmp}/test_run_settings.$$
PY=${KVSIM_PYTHON:-/usr/bin/python3}
mkdir -p "$TMP"; trap 'rm -rf "$TMP"' EXIT
HW="$SRC/sim/hw/h200_pcie5.cfg"
SAMPLE="$SRC/traces/sample_sklearn_512.h5"
pass=0; fail=0
ok()  { echo "ok   $*"; pass=$((pass+1)); }
bad() { echo "FAIL $*"; fail=$((fail+1)); }
q()   { sqlite3 -batch -noheader "$1" "$2"; }
last() { q "$1" "SELECT run_id FROM runs ORDER BY run_id DESC LIMIT 1"; }
val()  { q "$1" "SELECT value FROM run_values WHERE run_id=$(last "$1") AND name='$2'"; }

# ---- 1. one source of truth: page and anchors ------------------------------------
db=$TMP/page.db
if "$BIN" run --trace "$SAMPLE" --hw "$HW" --method quest --budget 128 --page 64 --db "$db" --quiet --no-progress; then
  pt=$(q "$db" "SELECT json_extract(config_json,'\$.hw.policy.page_tokens') FROM runs")
  pr=$(q "$db" "SELECT json_extract(config_json,'\$.resolved.page') FROM runs")
  pb=$(val "$db" page_bytes)
  # sample: head_dim 64, float16 K+V: 64 tokens x 2 x 64 x 2 B = 16384 B
  [ "$pt" = 64 ] && [ "$pr" = 64 ] && ok "--page 64 reaches policy.page_tokens ($pt) and the resolved page ($pr)" \
    || bad "--page 64: policy.page_tokens '$pt', resolved page '$pr'"
  awk -v b="$pb" 'BEGIN{exit !(b == 16384)}' && ok "page_bytes $pb = 64 tokens" || bad "page_bytes '$pb' (want 16384)"
else bad "run --page 64"; fi

expect_err() {   # expect_err WHAT PATTERN1 PATTERN2 -- ARGS...: exit != 0, one line naming both
  local what=$1 p1=$2 p2=$3; shift 4
  out=$("$BIN" "$@" 2>&1 >/dev/null); rc=$?
  lines=$(printf '%s\n' "$out" | grep -c .)
  if [ $rc -ne 0 ] && [ "$lines" -eq 1 ] && printf '%s' "$out" | grep -q -- "$p1" && printf '%s' "$out" | grep -q -- "$p2"; then
    ok "$what: $out"
  else bad "$what: rc=$rc: $out"; fi
}
# a hardware FILE that sets the anchors must agree with the method (it used to
# be overwritten by the method's --window without a word)
HWA=$TMP/hw_anchor; mkdir -p "$HWA"
sed 's#@include "parts/policy_default.inc"#policy = { anchor_window_tokens = 256; };#' "$HW" > "$HWA/a.cfg"
cp -r "$SRC/sim/hw/parts" "$HWA/parts"
expect_err "hw file anchors vs method window" "anchor_window_tokens = 256" "window is 16" -- \
  run --trace "$SAMPLE" --hw "$HWA/a.cfg" --method topk --budget 128 --db "$TMP/c.db" --no-progress
if "$BIN" run --trace "$SAMPLE" --hw "$HWA/a.cfg" --method topk --budget 300 --window 256 --db "$TMP/anch0.db" --quiet --no-progress; then
  ok "hw file anchors = --window 256: runs"
else bad "hw file anchors = --window 256 failed"; fi
expect_err "page vs policy.page_tokens" "page=64" "policy.page_tokens=32" -- \
  run --trace "$SAMPLE" --hw "$HW" --method topk --budget 64 --page 64 --set policy.page_tokens=32 --db "$TMP/c.db" --no-progress
expect_err "window vs policy.anchor_window_tokens" "window=64" "policy.anchor_window_tokens=1024" -- \
  run --trace "$SAMPLE" --hw "$HW" --method topk --budget 128 --window 64 --set policy.anchor_window_tokens=1024 --db "$TMP/c.db" --no-progress
expect_err "sinks vs policy.anchor_sink_tokens" "sinks=4" "policy.anchor_sink_tokens=8" -- \
  run --trace "$SAMPLE" --hw "$HW" --method topk --budget 128 --sinks 4 --set policy.anchor_sink_tokens=8 --db "$TMP/c.db" --no-progress
c=$( [ -f "$TMP/c.db" ] && q "$TMP/c.db" "SELECT count(*) FROM runs" || echo 0)
[ "$c" = 0 ] && ok "conflicting settings record no run" || bad "$c runs recorded for conflicting settings"

# an override alone sets the method's anchors too (the config shows one value)
db=$TMP/anch.db
if "$BIN" run --trace "$SAMPLE" --hw "$HW" --method topk --budget 200 --set policy.anchor_window_tokens=96 --db "$db" --quiet --no-progress; then
  w=$(q "$db" "SELECT json_extract(config_json,'\$.resolved.window') || ' ' || json_extract(config_json,'\$.hw.policy.anchor_window_tokens') FROM runs")
  [ "$w" = "96 96" ] && ok "hw.policy.anchor_window_tokens=96 alone: method window and policy both 96" || bad "window/policy '$w'"
else bad "run with an anchor override alone"; fi
# equal values given twice are fine
"$BIN" run --trace "$SAMPLE" --hw "$HW" --method topk --budget 200 --window 32 --set policy.anchor_window_tokens=32 \
  --db "$TMP/eq.db" --quiet --no-progress && ok "equal window and override accepted" || bad "equal window and override refused"

# ---- 2. budgets -----------------------------------------------------------------------
expect_err "--budget with --budget-frac" "budget" "budget-frac" -- \
  eval --trace "$SAMPLE" --method topk --budget 64 --budget-frac 0.5 --db "$TMP/b.db"
expect_err "--budget-frac with --read-budget" "budget-frac" "read-budget" -- \
  eval --trace "$SAMPLE" --method completion --budget-frac 0.1 --read-budget 40 --db "$TMP/b.db"
expect_err "--read-budget with --read-budget-frac" "read-budget" "read-budget-frac" -- \
  eval --trace "$SAMPLE" --method completion --read-budget 40 --read-budget-frac 0.1 --db "$TMP/b.db"
db=$TMP/clamp.db
err=$("$BIN" eval --trace "$SAMPLE" --method topk --budget 100000 --db "$db" --quiet --no-progress 2>&1 >/dev/null); rc=$?
cl=$(val "$db" budget_clamped); bt=$(val "$db" budget_tokens); rb=$(q "$db" "SELECT budget FROM runs")
if [ $rc -eq 0 ] && [ "$cl" = 1.0 ] && [ "$bt" = 512.0 ] && [ "$rb" = 512 ] && printf '%s' "$err" | grep -q "warning.*clamped"; then
  ok "budget 100000 on a 512-token context: clamped to 512, budget_clamped=1, warned: $err"
else bad "budget clamp: rc=$rc clamped='$cl' budget_tokens='$bt' runs.budget='$rb' stderr='$err'"; fi
"$BIN" eval --trace "$SAMPLE" --method topk --budget 64 --db "$db" --quiet --no-progress
[ "$(val "$db" budget_clamped)" = 0.0 ] && ok "budget 64: budget_clamped=0" || bad "budget 64: budget_clamped '$(val "$db" budget_clamped)'"

# read budget: recorded with its token-equivalents
db=$TMP/rb.db
if "$BIN" eval --trace "$SAMPLE" --method completion --feature-map fitted --read-budget-frac 0.1 --db "$db" --quiet --no-progress 2>"$TMP/rb.err"; then
  n=$(q "$db" "SELECT count(*) FROM run_values WHERE run_id=1 AND name IN ('read_token_eq','exact_tokens','summary_token_eq','param_token_eq','meta_token_eq','read_budget')")
  rt=$(val "$db" read_token_eq); rbv=$(val "$db" read_budget)
  [ "$n" = 6 ] && awk -v a="$rt" -v b="$rbv" 'BEGIN{exit !(a > 0 && a <= b * 1.0001)}' \
    && ok "read budget 0.1 x 512 = $rbv te: read_token_eq $rt <= budget, 6 values recorded" \
    || bad "read budget values: n=$n read_token_eq '$rt' read_budget '$rbv'"
else bad "eval with --read-budget-frac: $(cat "$TMP/rb.err")"; fi

# ---- 3. the summary and the run values --------------------------------------------------
db=$TMP/sum.db
out=$("$BIN" run --trace "$SAMPLE" --hw "$HW" --model llama-3.1-8b --method completion --feature-map taylor --select topk \
       --budget-frac 0.1 --db "$db" --no-progress 2>&1)
missing=""
for w in sample_sklearn_512.h5 llama-3.1-8b h200_pcie5.cfg "method completion" "map taylor" features "selector topk" \
         "sinks [0-9]" "window [0-9]" "given as fraction"; do
  printf '%s' "$out" | grep -q -- "$w" || missing="$missing [$w]"
done
[ -z "$missing" ] && ok "the summary names trace, model, hardware, method, map, features, selector, anchors, budget kind" \
  || bad "summary lacks$missing: $out"
if printf '%s' "$out" | grep -q "HBM read [0-9]*\.[0-9] MB" && ! printf '%s' "$out" | grep -q "[0-9]e[+-][0-9]* MB"; then
  ok "MB printed as plain numbers: $(printf '%s' "$out" | grep -o 'HBM read [^,]*')"
else bad "MB format: $out"; fi
d=$(q "$db" "SELECT count(*) FROM run_values WHERE name='mean_step_latency_ns'")
m=$(q "$db" "SELECT count(*) FROM run_values WHERE name='mean_step_ns'")
dups=$(q "$db" "SELECT count(*) FROM (SELECT name FROM run_values GROUP BY run_id, name HAVING count(*) > 1)")
[ "$d" = 0 ] && [ "$m" = 1 ] && [ "$dups" = 0 ] && ok "one mean step latency value (mean_step_ns), no duplicate names" \
  || bad "run values: mean_step_latency_ns $d, mean_step_ns $m, duplicated names $dups"

# ---- 4. more than 256 layers ---------------------------------------------------------------
big=$TMP/l300.h5
if "$BIN" trace gen -o "$big" --layers 300 --heads 2 --kv-heads 1 --head-dim 16 --prefill 96 --window 8 --steps 2 --gzip 0 >/dev/null 2>&1; then
  db=$TMP/l300.db
  if "$BIN" eval --trace "$big" --method topk --budget 16 --db "$db" --quiet --no-progress; then
    nl=$(q "$db" "SELECT count(DISTINCT layer) FROM head_metrics")
    [ "$nl" = 300 ] && ok "300-layer trace: all 300 layers evaluated" || bad "300-layer trace: $nl layers"
  else bad "eval of a 300-layer trace"; fi
  list=$(seq -s, 299 -1 0)
  if "$BIN" run --trace "$big" --hw "$HW" --method topk --budget 16 --layers "$list" --db "$db" --quiet --no-progress; then
    nl=$(q "$db" "SELECT count(DISTINCT layer) FROM head_metrics WHERE run_id=2")
    ns=$(q "$db" "SELECT count(*) FROM step_metrics WHERE run_id=2")
    [ "$nl" = 300 ] && [ "$ns" = 2 ] && ok "--layers with 300 entries (timing run): 300 layers, 2 steps" || bad "300-entry list: $nl layers, $ns steps"
  else bad "run with a 300-entry --layers list"; fi
else bad "trace gen of 300 layers"; fi

# ---- 5. bad data never ends 'complete' -------------------------------------------------------
if ! "$PY" -c "import h5py, numpy" 2>/dev/null; then
  echo "SKIP bad-data cases: no Python with h5py ($PY)"
else
  mk() {   # mk NAME PYTHON-STATEMENTS (f = the copy, opened r+)
    cp "$SAMPLE" "$TMP/$1.h5"
    "$PY" - "$TMP/$1.h5" <<EOF
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r+")
$2
f.close()
EOF
  }
  mk nan_k   'k = f["layer_001/k"][...]; k[1, 300, 5] = np.nan; f["layer_001/k"][...] = k'
  mk nan_q   'q = f["layer_000/q"][...]; q[3, 2, 0] = np.nan; f["layer_000/q"][...] = q'
  mk oref_x2 'o = f["layer_001/o_ref"][...]; f["layer_001/o_ref"][...] = 2 * o'
  mk oref_nan 'o = f["layer_000/o_ref"][...]; o[0, 0, 0] = np.nan; f["layer_000/o_ref"][...] = o'
  mk zero_k  'f["layer_000/k"][1, ...] = 0'
  # float32 values whose products overflow float32 (fp16 cannot hold them: rewrite as f32)
  "$PY" - "$SAMPLE" "$TMP/ovf.h5" <<'EOF'
import sys, h5py, numpy as np
src, dst = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "w")
for k, v in src.attrs.items(): dst.attrs[k] = v
dst.create_dataset("tokens", data=src["tokens"][...])
for L in ("layer_000", "layer_001"):
    g = dst.create_group(L)
    for n in ("k", "v", "q"):
        x = src[L + "/" + n][...].astype(np.float32)
        if n in ("k", "q"): x = x * np.float32(1e19)
        g.create_dataset(n, data=x)
    g.create_dataset("o_ref", data=src[L + "/o_ref"][...])
dst.close()
EOF
  check_fail() {   # check_fail WHAT FILE PATTERN [extra args]: exit != 0, message names the file, run not complete
    local what=$1 f=$2 pat=$3; shift 3
    db=$TMP/bad_$what.db
    out=$("$BIN" eval --trace "$f" --method topk --budget 64 --db "$db" --quiet --no-progress "$@" 2>&1 >/dev/null); rc=$?
    c=$( [ -f "$db" ] && q "$db" "SELECT count(*) FROM runs WHERE status='complete'" || echo 0)
    if [ $rc -ne 0 ] && [ "$c" = 0 ] && printf '%s' "$out" | grep -q "$(basename "$f")" && printf '%s' "$out" | grep -qi -- "$pat"; then
      ok "$what: failed: $out"
    else bad "$what: rc=$rc complete=$c: $out"; fi
  }
  check_fail nan_k    "$TMP/nan_k.h5"    "nan\|non-finite"
  check_fail nan_q    "$TMP/nan_q.h5"    "nan\|non-finite"
  check_fail oref_x2  "$TMP/oref_x2.h5"  "o_ref"
  check_fail oref_nan "$TMP/oref_nan.h5" "o_ref\|nan"
  check_fail zero_k   "$TMP/zero_k.h5"   "all zeros\|never written"
  check_fail overflow "$TMP/ovf.h5"      "overflow"
  # --allow-nonfinite: complete, the rows touched are marked (NULL metrics + counts)
  db=$TMP/allow.db
  if "$BIN" eval --trace "$TMP/nan_k.h5" --method topk --budget 64 --allow-nonfinite --db "$db" --quiet --no-progress 2>"$TMP/allow.err"; then
    nr=$(val "$db" nonfinite_rows); nn=$(q "$db" "SELECT count(*) FROM head_metrics WHERE rel_l2 IS NULL")
    mr=$(val "$db" mean_rel_l2)
    awk -v a="$nr" -v b="$nn" -v m="$mr" 'BEGIN{exit !(a > 0 && a == b && m != "" && m == m)}' \
      && ok "--allow-nonfinite: complete, nonfinite_rows=$nr = rows with NULL rel_l2, mean_rel_l2 $mr over the rest" \
      || bad "--allow-nonfinite: nonfinite_rows '$nr', NULL rows $nn, mean '$mr'"
  else bad "--allow-nonfinite run failed: $(cat "$TMP/allow.err")"; fi
fi

# ---- 6. a layer without o_ref is visible ---------------------------------------------------------
db=$TMP/noref.db
gen=$TMP/noref.h5
if "$PY" -c "import h5py" 2>/dev/null; then
  cp "$SAMPLE" "$gen"
  "$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); del f['layer_001/o_ref']; f.close()" "$gen"
  out=$("$BIN" eval --trace "$gen" --method topk --budget 64 --db "$db" --quiet --no-progress 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 0 ]; then
    oc=$(val "$db" oref_layers_checked)
    printf '%s' "$out" | grep -q "o_ref" && [ "$oc" = 0.0 ] && ok "no o_ref in a layer: warned ($out), oref_layers_checked=0" \
      || bad "no o_ref: stderr '$out', oref_layers_checked '$oc'"
  else
    printf '%s' "$out" | grep -q "o_ref" && ok "no o_ref in a layer: refused with a message: $out" || bad "no o_ref: rc=$rc: $out"
  fi
fi
"$BIN" eval --trace "$SAMPLE" --method topk --budget 64 --db "$TMP/ref.db" --quiet --no-progress
[ "$(val "$TMP/ref.db" oref_layers_checked)" = 2.0 ] && ok "o_ref checked in both layers of the sample" \
  || bad "oref_layers_checked '$(val "$TMP/ref.db" oref_layers_checked)'"

# ---- 7. signal handlers live in the CLI, not the library ------------------------------------------
# (resetting to SIG_DFL/SIG_IGN in a forked child is not a handler)
hits=$(grep -nE '\b(sigaction|signal)[[:space:]]*\(' "$SRC"/sim/*.c "$SRC"/traces/*.c "$SRC"/models/*.c 2>/dev/null \
       | grep -vE 'SIG_(DFL|IGN)' || true)
[ -z "$hits" ] && ok "no signal handler installed by the library (sim/, traces/, models/)" || bad "library installs handlers: $hits"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
