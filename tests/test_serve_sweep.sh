#!/usr/bin/env bash
# test_serve_sweep.sh — serve runs through `kvsim sweep` (workload = FILE,
# wset.* axes; sim/SWEEP.md "Serve sweeps"): a sweep over 2 arrival rates x
# 2 methods with -j 2 makes 4 complete serve runs whose rows equal those of
# the same 4 `kvsim serve` runs done one by one (compared by value, run ids
# aside); re-running skips all 4; editing the workload file re-runs them;
# bad serve sweep files fail before any run with FILE:LINE.
set -u
: "${KVSIM_BIN:?}" "${KVSIM_SRC:?}" "${KVSIM_TMP:?}"
T="$KVSIM_TMP/serve_sweep_sh"
rm -rf "$T"; mkdir -p "$T"
fail() { echo "FAIL: $*"; exit 1; }
PY=${KVSIM_PYTHON:-/usr/bin/python3}
"$PY" -c "import sqlite3, json" 2>/dev/null || { echo "SKIP: $PY cannot import sqlite3"; exit 77; }
SAMPLE="$KVSIM_SRC/traces/sample_pandas_2k.h5"
HW="$KVSIM_SRC/sim/hw/h200_pcie5.cfg"
[ -r "$SAMPLE" ] || fail "missing $SAMPLE (shipped with the repository)"

# the example workload, 40 requests, with HBM small enough that offload runs
sed "s#\"../../traces/#\"$KVSIM_SRC/traces/#" "$KVSIM_SRC/reports/workloads/example.cfg" > "$T/wl.cfg"
grep -q "$SAMPLE" "$T/wl.cfg" || fail "could not point the workload copy at the sample trace"
cat > "$T/serve.cfg" <<EOF
name = "servesweep";
workload = "wl.cfg";                 # relative to this file
hw = "$HW";
base = {
  model = "llama-3.1-8b"; budget_frac = 0.04;
  hw = { gpu = { hbm_capacity_bytes = 40e9; }; };
  wset = { requests = { count = 40; }; };
};
axes = {
  wset = { requests = { rate_per_s = [4.0, 20.0]; }; };
  method = ["topk", "quest"];
};
EOF

# 1. the sweep, -j 2
(cd / && "$KVSIM_BIN" sweep "$T/serve.cfg" --db "$T/sweep.db" -j 2 --quiet) > "$T/s1.txt" 2>&1 \
  || { cat "$T/s1.txt"; fail "serve sweep"; }
grep -q "done 4, skipped 0" "$T/s1.txt" || { cat "$T/s1.txt"; fail "expected 4 runs done"; }

# 2. the same 4 runs one by one with kvsim serve
for rate in 4.0 20.0; do
  for m in topk quest; do
    "$KVSIM_BIN" serve --workload "$T/wl.cfg" --hw "$HW" --model llama-3.1-8b --method "$m" --budget-frac 0.04 \
      --set gpu.hbm_capacity_bytes=40e9 --wset requests.count=40 --wset "requests.rate_per_s=$rate" \
      --db "$T/one.db" --quiet || fail "kvsim serve $m rate $rate"
  done
done

# 3. equal rows, by value: runs matched on (method, arrival rate)
cat > "$T/cmp.py" <<'EOF'
import json, sqlite3, sys
def load(path):
    db = sqlite3.connect(path)
    runs = db.execute("SELECT run_id, kind, status, method, config_json, sweep_id FROM runs").fetchall()
    out = {}
    for rid, kind, status, method, cj, sweep in runs:
        assert kind == "serve" and status == "complete", (path, rid, kind, status)
        c = json.loads(cj)
        key = (method, c["workload"]["requests"]["rate_per_s"])
        assert key not in out, (path, key)
        rows = {}
        for t in ("serve_requests", "serve_tbt", "serve_occupancy", "link_util", "run_values"):
            cols = [r[1] for r in db.execute("PRAGMA table_info(%s)" % t)]
            keep = [c2 for c2 in cols if c2 != "run_id"]
            q = "SELECT %s FROM %s WHERE run_id = ?" % (", ".join(keep), t)
            if t == "run_values":
                q += " AND name <> 'serve_wall_s'"
            rows[t] = sorted(db.execute(q, (rid,)).fetchall(), key=repr)
        out[key] = (rows, sweep)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert len(a) == 4 and sorted(a) == sorted(b), (sorted(a), sorted(b))
for k in a:
    ra, rb = a[k][0], b[k][0]
    assert a[k][1] == "servesweep", ("sweep_id", a[k][1])
    for t in ra:
        assert ra[t] == rb[t], ("rows differ", k, t, len(ra[t]), len(rb[t]))
    assert len(ra["serve_requests"]) == 40 and len(ra["serve_tbt"]) > 0, k
print("ok: 4 runs, equal rows")
EOF
"$PY" "$T/cmp.py" "$T/sweep.db" "$T/one.db" || fail "sweep rows differ from kvsim serve rows"
# the offload path ran in at least one point (so the comparison covers it)
"$PY" - "$T/sweep.db" <<'EOF' || fail "no point offloaded"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
n = db.execute("SELECT COUNT(*) FROM run_values WHERE name = 'serve_offload_frac' AND value > 0").fetchone()[0]
sys.exit(0 if n >= 1 else 1)
EOF

# 4. re-running skips all 4 (dry run lists them complete)
"$KVSIM_BIN" sweep "$T/serve.cfg" --db "$T/sweep.db" -j 2 --quiet > "$T/s2.txt" 2>&1 || { cat "$T/s2.txt"; fail "rerun"; }
grep -q "done 0, skipped 4" "$T/s2.txt" || { cat "$T/s2.txt"; fail "rerun did not skip the 4 runs"; }
"$KVSIM_BIN" sweep "$T/serve.cfg" --db "$T/sweep.db" --dry-run | grep -c "  complete  " | grep -qx 4 \
  || fail "dry run: 4 complete expected"

# 5. editing the workload file (a comment is enough: its bytes are in the identity) re-runs them
echo "# edited" >> "$T/wl.cfg"
"$KVSIM_BIN" sweep "$T/serve.cfg" --db "$T/sweep.db" -j 2 --quiet > "$T/s3.txt" 2>&1 || { cat "$T/s3.txt"; fail "rerun after edit"; }
grep -q "done 4, skipped 0" "$T/s3.txt" || { cat "$T/s3.txt"; fail "edited workload: expected 4 new runs"; }
# ... and a changed setting gives different rows
sed -i 's/^seed = 1;/seed = 2;/' "$T/wl.cfg"
grep -q "^seed = 2;" "$T/wl.cfg" || fail "could not edit the seed"
"$KVSIM_BIN" sweep "$T/serve.cfg" --db "$T/sweep.db" -j 2 --quiet > "$T/s4.txt" 2>&1 || { cat "$T/s4.txt"; fail "rerun after seed"; }
grep -q "done 4, skipped 0" "$T/s4.txt" || { cat "$T/s4.txt"; fail "new seed: expected 4 new runs"; }
n=$("$PY" -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT COUNT(*) FROM runs WHERE status='complete'\").fetchone()[0])" "$T/sweep.db")
[ "$n" = 12 ] || fail "expected 12 complete runs, got $n"

# 6. shards of serve runs merge into a new database (what rank 0 does under
#    MPI): the serve_* tables are created there and every row comes along
"$KVSIM_BIN" merge "$T/merged.db" "$T/sweep.db" > /dev/null || fail "merge of serve runs"
for t in serve_requests serve_tbt serve_occupancy runs; do
  a=$("$PY" -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM $t').fetchone()[0])" "$T/sweep.db")
  b=$("$PY" -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM $t').fetchone()[0])" "$T/merged.db")
  [ "$a" = "$b" ] && [ "$a" -gt 0 ] || fail "merge: $t has $b rows, source $a"
done

# 7. bad serve sweep files: one line naming FILE:LINE, before any run
bad() {   # bad NAME EXPECTED-TEXT, file body on stdin
  cat > "$T/$1.cfg"
  out=$("$KVSIM_BIN" sweep "$T/$1.cfg" --db "$T/bad.db" 2>&1); rc=$?
  [ $rc -ne 0 ] || fail "$1: accepted"
  echo "$out" | grep -qF -- "$2" || fail "$1: message '$out' lacks '$2'"
  [ "$(echo "$out" | wc -l)" -eq 1 ] || fail "$1: not one line: $out"
}
bad nowl "nowl.cfg:3: axes.wset.requests.rate_per_s: wset.* overrides a workload setting" <<EOF
traces = "$SAMPLE";
base = { method = "topk"; budget = 64; };
axes = { wset = { requests = { rate_per_s = [2.0, 4.0]; }; }; };
EOF
bad both "both.cfg:1: workload and traces (line 2) are both set" <<EOF
workload = "wl.cfg";
traces = "$SAMPLE";
hw = "$HW";
EOF
bad unused "unused.cfg:3: base.layers: serve runs (workload = ...) do not use 'layers'" <<EOF
workload = "wl.cfg";
hw = "$HW";
base = { method = "topk"; budget = 64; layers = "0"; };
EOF
bad wkey "wkey.cfg:4: axes.wset.requests.rate_per_sec = 2: override: unknown workload key" <<EOF
workload = "wl.cfg";
hw = "$HW";
base = { method = "topk"; budget = 64; };
axes = { wset = { requests = { rate_per_sec = [2.0, 4.0]; }; }; };
EOF
bad wrange "wrange.cfg:4: axes.wset.requests.rate_per_s = -1:" <<EOF
workload = "wl.cfg";
hw = "$HW";
base = { method = "topk"; budget = 64; };
axes = { wset = { requests = { rate_per_s = [2.0, -1.0]; }; }; };
EOF
bad nohw "nohw.cfg: workload is set but hw is not" <<EOF
workload = "wl.cfg";
base = { method = "topk"; budget = 64; };
EOF
bad nobudget "budget or budget_frac is required for method topk" <<EOF
workload = "wl.cfg";
hw = "$HW";
base = { method = "topk"; };
EOF
bad nofile "nofile.cfg:1: workload 'missing.cfg'" <<EOF
workload = "missing.cfg";
hw = "$HW";
EOF
[ ! -e "$T/bad.db" ] || fail "a rejected sweep file created its database"
echo "ok"
