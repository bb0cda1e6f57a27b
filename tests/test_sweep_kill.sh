#!/usr/bin/env bash
# test_sweep_kill.sh — a sweep killed with SIGKILL partway (after at least one
# run completed, while others run) loses no completed run, leaves nothing
# that looks complete but is not, and no worker behind; re-running it
# completes the rest, and the final database holds every run exactly once,
# all complete, with the same results (by config_hash) as an uninterrupted
# sweep into another database.
set -euo pipefail
K=${KVSIM_BIN:?KVSIM_BIN not set}
PY=/usr/bin/python3
T=${KVSIM_TMP:-/tmp}/sweep_kill
rm -rf "$T"
mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$K" trace gen -o "$T/t.h5" --layers 2 --prefill 4096 --steps 16 --seed 3 >/dev/null
cat > "$T/kill.cfg" <<'EOF'
name = "kill";
traces = "t.h5";
axes = {
  method = ["topk", "completion"];
  budget = { start = 64; stop = 1024; num = 5; log = true; };
};
EOF
N=10
EXPECT_ROWS=$((16 * 2 * 8))   # steps x layers x query heads per run

# Canonical dump: per config_hash, the run's status and every metric row.
cat > "$T/dump.py" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for (h, status, rid) in db.execute("SELECT config_hash, status, run_id FROM runs ORDER BY config_hash, run_id"):
    print(h, status)
    for r in db.execute("SELECT step, layer, head, rel_l2, cosine, exact_mass, est_mass, true_resid_mass, entropy,"
                        " tokens_exact FROM head_metrics WHERE run_id = ? ORDER BY step, layer, head", (rid,)):
        print(h, *[repr(x) for x in r])
    for r in db.execute("SELECT * FROM step_metrics WHERE run_id = ? ORDER BY step", (rid,)):
        print(h, *[repr(x) for x in r[1:]])
EOF
q() { "$PY" -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1], timeout=30).execute(sys.argv[2]).fetchone()[0])" "$@"; }

# 1. the uninterrupted reference
"$K" sweep "$T/kill.cfg" --db "$T/ref.db" -j 2 --quiet > "$T/ref.out"
[ "$(q "$T/ref.db" "SELECT COUNT(*) FROM runs WHERE status='complete'")" = "$N" ] || fail "reference sweep incomplete"

# 2. the same sweep, killed with SIGKILL once >= 1 run is complete and another is running
"$K" sweep "$T/kill.cfg" --db "$T/k.db" -j 2 > "$T/k1.out" 2>&1 &
pid=$!
killed=0
for _ in $(seq 1 600); do
    if [ -f "$T/k.db" ]; then
        c=$(q "$T/k.db" "SELECT COUNT(*) FROM runs WHERE status='complete'" 2>/dev/null || echo 0)
        r=$(q "$T/k.db" "SELECT COUNT(*) FROM runs WHERE status='running'" 2>/dev/null || echo 0)
        if [ "$c" -ge 1 ] && [ "$r" -ge 1 ] && [ "$c" -lt "$N" ]; then
            kill -9 "$pid"
            killed=1
            break
        fi
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
done
wait "$pid" 2>/dev/null || true
[ "$killed" = 1 ] || fail "the sweep ended before it could be killed partway"
sleep 0.5
# its workers died with it (PR_SET_PDEATHSIG): nothing still writes k.db
if pgrep -f -- "--db $T/k.db" >/dev/null; then fail "workers outlived the killed sweep"; fi
done1=$(q "$T/k.db" "SELECT COUNT(*) FROM runs WHERE status='complete'")
left=$(q "$T/k.db" "SELECT COUNT(*) FROM runs WHERE status<>'complete'")
echo "killed with $done1 complete, $left incomplete run rows"
[ "$done1" -ge 1 ] && [ "$done1" -lt "$N" ] || fail "expected a partial database, got $done1 complete"
# every run marked complete has all its rows
bad=$(q "$T/k.db" "SELECT COUNT(*) FROM runs r WHERE status='complete' AND
                   (SELECT COUNT(*) FROM head_metrics h WHERE h.run_id = r.run_id) <> $EXPECT_ROWS")
[ "$bad" = 0 ] || fail "$bad complete runs with missing rows after the kill"

# 3. re-run: resumes, skipping what is complete, redoing the rest
"$K" sweep "$T/kill.cfg" --db "$T/k.db" -j 2 > "$T/k2.out" 2> "$T/k2.err" || fail "re-run failed: $(cat "$T/k2.err")"
cat "$T/k2.out"
grep -q "done $((N - done1)), skipped $done1 " "$T/k2.out" || fail "re-run did not skip exactly the $done1 complete runs"

# 4. every run exactly once, all complete, same results as the reference
[ "$(q "$T/k.db" "SELECT COUNT(*) FROM runs")" = "$N" ] || fail "runs table does not hold exactly $N runs"
[ "$(q "$T/k.db" "SELECT COUNT(DISTINCT config_hash) FROM runs WHERE status='complete'")" = "$N" ] || fail "not every run complete once"
"$PY" "$T/dump.py" "$T/ref.db" > "$T/ref.dump"
"$PY" "$T/dump.py" "$T/k.db" > "$T/k.dump"
[ "$(wc -l < "$T/ref.dump")" -gt "$((N * EXPECT_ROWS))" ] || fail "reference dump too short"
cmp -s "$T/ref.dump" "$T/k.dump" || { diff "$T/ref.dump" "$T/k.dump" | head -5; fail "results differ from the uninterrupted sweep"; }

# 5. a third run has nothing to do
"$K" sweep "$T/kill.cfg" --db "$T/k.db" -j 2 --quiet > "$T/k3.out"
grep -q "done 0, skipped $N " "$T/k3.out" || fail "third run was not a no-op: $(cat "$T/k3.out")"
echo "PASS: killed after $done1/$N runs; resumed to $N complete runs identical to the reference"
