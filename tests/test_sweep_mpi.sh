#!/usr/bin/env bash
# test_sweep_mpi.sh — `mpirun -n 2 kvsim sweep` spreads the runs over two
# ranks (shards FILE.rankNNN, merged by rank 0) and yields the same rows as
# the single-process sweep (canonical dump of runs/head_metrics/step_metrics
# by config_hash, not run_id); the shards are gone afterwards; a re-run skips
# everything; a shard left over from a killed MPI sweep is merged on resume.
# Skipped (77) unless kvsim was built with -DKVSIM_MPI=ON ("MPI: yes" in
# `kvsim sweep --help`) and mpirun is on PATH.
set -euo pipefail
K=${KVSIM_BIN:?KVSIM_BIN not set}
PY=/usr/bin/python3
T=${KVSIM_TMP:-/tmp}/sweep_mpi
RANKS=${KVSIM_MPI_RANKS:-2}
fail() { echo "FAIL: $*" >&2; exit 1; }

if ! "$K" sweep --help | grep -q '^MPI: yes'; then
    echo "SKIP: $K was built without MPI (configure with -DKVSIM_MPI=ON)"
    exit 77
fi
MPIRUN=$(command -v mpirun || command -v mpiexec || true)
[ -n "$MPIRUN" ] || { echo "SKIP: no mpirun on PATH"; exit 77; }
# Open MPI refuses root without these; MPICH ignores them
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

rm -rf "$T"
mkdir -p "$T"
"$K" trace gen -o "$T/t.h5" --layers 2 --prefill 2048 --steps 8 --seed 5 >/dev/null
cat > "$T/mpi.cfg" <<'EOF'
name = "mpi";
traces = "t.h5";
axes = {
  method = ["topk", "completion", "quest"];
  budget = [64, 256, 1024];
};
EOF
N=9
cat > "$T/dump.py" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for (h, status, method, budget, cfg, rid) in db.execute(
        "SELECT config_hash, status, method, budget, config_json, run_id FROM runs ORDER BY config_hash"):
    print(h, status, method, budget, cfg)
    for r in db.execute("SELECT step, layer, head, rel_l2, cosine, exact_mass, est_mass, true_resid_mass, entropy,"
                        " tokens_exact FROM head_metrics WHERE run_id = ? ORDER BY step, layer, head", (rid,)):
        print(h, *[repr(x) for x in r])
    for r in db.execute("SELECT * FROM step_metrics WHERE run_id = ? ORDER BY step", (rid,)):
        print(h, *[repr(x) for x in r[1:]])
EOF

"$K" sweep "$T/mpi.cfg" --db "$T/one.db" -j 1 --quiet > "$T/one.out"
"$MPIRUN" -n "$RANKS" "$K" sweep "$T/mpi.cfg" --db "$T/mpi.db" > "$T/mpi.out" 2> "$T/mpi.err" \
    || fail "mpirun sweep failed: $(tail -5 "$T/mpi.err")"
cat "$T/mpi.out"
grep -q "over $RANKS ranks: done $N, skipped 0" "$T/mpi.out" || fail "summary: $(cat "$T/mpi.out")"
ls "$T"/mpi.db.rank* >/dev/null 2>&1 && fail "shards left behind after the merge"
"$PY" "$T/dump.py" "$T/one.db" > "$T/one.dump"
"$PY" "$T/dump.py" "$T/mpi.db" > "$T/mpi.dump"
[ "$(grep -c ' complete ' "$T/one.dump")" = "$N" ] || fail "single-process sweep incomplete"
cmp -s "$T/one.dump" "$T/mpi.dump" || { diff "$T/one.dump" "$T/mpi.dump" | head -5; fail "MPI sweep rows differ"; }
# each rank did its share: both shards contributed
[ "$(grep -c 'rank 0 run' "$T/mpi.err")" -ge 1 ] && [ "$(grep -c 'rank 1 run' "$T/mpi.err")" -ge 1 ] \
    || fail "the runs were not spread over the ranks"

# re-run: everything skipped
"$MPIRUN" -n "$RANKS" "$K" sweep "$T/mpi.cfg" --db "$T/mpi.db" --quiet > "$T/mpi2.out"
grep -q "done 0, skipped $N" "$T/mpi2.out" || fail "re-run did not skip: $(cat "$T/mpi2.out")"

# a shard left by a killed MPI sweep: its complete runs are merged, not redone
cp "$T/one.db" "$T/lost.db.rank001"
"$MPIRUN" -n "$RANKS" "$K" sweep "$T/mpi.cfg" --db "$T/lost.db" --quiet > "$T/lost.out"
grep -q "done 0, skipped $N" "$T/lost.out" || fail "leftover shard not merged on resume: $(cat "$T/lost.out")"
[ ! -e "$T/lost.db.rank001" ] || fail "merged shard not removed"

# kvsim merge by hand gives the same rows
"$K" merge "$T/hand.db" "$T/one.db" > /dev/null
"$PY" "$T/dump.py" "$T/hand.db" | cmp -s - "$T/one.dump" || fail "kvsim merge changed rows"
echo "PASS: $RANKS-rank sweep = single-process sweep ($N runs)"
