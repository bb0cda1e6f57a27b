#!/usr/bin/env bash
# test_sweep_ident.sh — run identity and sweep safety, through the program:
#  - re-running an unchanged sweep skips every run;
#  - changing the hardware file's contents, or the trace file's, under the
#    same path re-runs (the identity covers contents, not paths);
#  - runs.kvsim_version names the source revision;
#  - a second sweep into a database another sweep is filling is refused with
#    a clear error (advisory lock), and no identity ends up complete twice;
#  - hardware files as an axis (hw = [a, b]) through the program;
#  - a 64-bit seed libconfig 1.5 would wrap (4294967297 -> 1) is read exactly.
set -euo pipefail
K=${KVSIM_BIN:?KVSIM_BIN not set}
SRC=${KVSIM_SRC:?KVSIM_SRC not set}
T=${KVSIM_TMP:-/tmp}/sweep_ident
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "SKIP: sqlite3 shell not installed"; exit 77; }
rm -rf "$T"
mkdir -p "$T"
cd "$T"
"$K" trace gen -o t.h5 --layers 2 --prefill 512 --steps 4 --seed 3 >/dev/null
echo "@include \"$SRC/sim/hw/h200_pcie5.cfg\"" > hw.cfg
cat > s.cfg <<'EOF'
name = "ident";
traces = "t.h5";
hw = "hw.cfg";
base = { method = "topk"; layers = "0"; };
axes = { budget = [16, 32]; };
EOF
sweep() { "$K" sweep s.cfg --db r.db -j 1 --quiet; }
sweep > o1
grep -q 'done 2, skipped 0' o1 || fail "first sweep: $(cat o1)"
sweep > o2
grep -q 'done 0, skipped 2' o2 || fail "unchanged sweep did not skip (run identity differs between sweep and run?): $(cat o2)"
# other hardware contents under the same path
echo "@include \"$SRC/sim/hw/gh200_c2c.cfg\"" > hw.cfg
sweep > o3
grep -q 'done 2, skipped 0' o3 || fail "changed hardware file not re-run: $(cat o3)"
sweep > o4
grep -q 'done 0, skipped 2' o4 || fail "re-run after the hardware change: $(cat o4)"
# another trace under the same path
"$K" trace gen -o t.h5 --layers 2 --prefill 512 --steps 4 --seed 4 >/dev/null
sweep > o5
grep -q 'done 2, skipped 0' o5 || fail "changed trace not re-run: $(cat o5)"
[ "$(sqlite3 r.db "SELECT count(*) FROM runs WHERE status='complete'")" = 6 ] || fail "run count"
# the plots keep the runs of the two hardware contents apart (same file name, same settings)
[ "$(sqlite3 -cmd ".read $SRC/reports/views.sql" r.db "SELECT n_values FROM v_varying WHERE key = 'hw_version'")" = 2 ] ||
    fail "views do not tell the two hardware contents apart"
[ "$(sqlite3 -cmd ".read $SRC/reports/views.sql" r.db "SELECT count(DISTINCT budget_label) FROM v_run_label")" = 2 ] ||
    fail "plot labels do not tell the two hardware contents apart"
v=$(sqlite3 r.db "SELECT DISTINCT kvsim_version FROM runs")
case "$v" in *+?*) ;; *) fail "kvsim_version without the revision: $v" ;; esac

# two sweeps into one database: the second is refused while the first runs
cat > long.cfg <<'EOF'
name = "long";
traces = "t.h5";
base = { method = "completion"; };
axes = { budget = { start = 16; stop = 400; step = 8; }; };
EOF
"$K" sweep long.cfg --db c.db -j 1 --quiet > l1 2>&1 &
pid=$!
for _ in $(seq 1 200); do   # until the first sweep holds the lock
    [ -s c.db.lock ] && ! flock -n c.db.lock true 2>/dev/null && break
    sleep 0.05
done
if "$K" sweep long.cfg --db c.db -j 1 --quiet > l2 2> e2; then fail "a second sweep ran into a database being filled"; fi
grep -q 'another kvsim (pid [0-9]*) is filling this database' e2 || fail "lock message: $(cat e2)"
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
"$K" sweep long.cfg --db c.db -j 2 --quiet > l3 || fail "resume after the lock was released: $(cat l3)"
[ "$(sqlite3 c.db "SELECT count(*) FROM (SELECT config_hash FROM runs WHERE status='complete' GROUP BY config_hash HAVING count(*) > 1)")" = 0 ] ||
    fail "an identity complete twice"

# hardware files as an axis
echo "@include \"$SRC/sim/hw/h200_pcie5.cfg\"" > hw_a.cfg
echo "@include \"$SRC/sim/hw/gh200_c2c.cfg\"" > hw_b.cfg
printf 'traces = "t.h5";\nhw = ["hw_a.cfg", "hw_b.cfg"];\nbase = { method = "topk"; layers = "0"; budget = 16; };\n' > h.cfg
"$K" sweep h.cfg --db h.db --dry-run > d1
grep -q 'hw=hw_a.cfg' d1 && grep -q 'hw=hw_b.cfg' d1 || fail "hw axis labels: $(cat d1)"
"$K" sweep h.cfg --db h.db -j 2 --quiet > h1 || fail "hw axis sweep: $(cat h1)"
[ "$(sqlite3 h.db "SELECT count(DISTINCT json_extract(config_json, '\$.hw.name')) FROM runs WHERE status='complete'")" = 2 ] ||
    fail "hw axis: runs do not use both hardware files"

# a seed libconfig 1.5 alone would read as 1: read exactly (kvs_cfg), recorded exactly
printf 'traces = "t.h5";\nbase = { method = "completion"; budget = 16; layers = "0"; };\naxes = { seed = [1, 4294967297]; };\n' > w.cfg
"$K" sweep w.cfg --db w.db -j 2 --quiet > w1 || fail "64-bit seed sweep: $(cat w1)"
[ "$(sqlite3 w.db "SELECT group_concat(json_extract(config_json, '\$.spec.seed'), ' ') FROM (SELECT config_json FROM runs
      WHERE status='complete' ORDER BY json_extract(config_json, '\$.spec.seed'))")" = "1 4294967297" ] ||
    fail "seeds recorded: $(sqlite3 w.db "SELECT json_extract(config_json, '\$.spec.seed') FROM runs")"
echo "PASS: identity follows contents; lock; hw axis; wide integers"
