#!/usr/bin/env bash
# test_merge.sh — `kvsim merge` and the database guards, through the program:
#  - two databases filled independently (both start at run_id 1) merge into
#    one: every complete run once, run ids renumbered where they clash, each
#    run's rows still linked to it; merging again adds nothing;
#  - all or nothing: a bad source leaves the output exactly as it was (and a
#    new output is not left behind);
#  - an unrelated SQLite file (as merge output or --db) is refused untouched:
#    same bytes, no kvsim tables, no WAL;
#  - --db "" and --db :memory: are refused instead of discarding results.
set -euo pipefail
K=${KVSIM_BIN:?KVSIM_BIN not set}
T=${KVSIM_TMP:-/tmp}/merge
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "SKIP: sqlite3 shell not installed"; exit 77; }
rm -rf "$T"
mkdir -p "$T"
cd "$T"
"$K" trace gen -o t.h5 --layers 2 --prefill 512 --steps 4 --seed 3 >/dev/null
run() {   # run DB METHOD BUDGET
    "$K" eval --trace t.h5 --method "$2" --budget "$3" --layers 0 --db "$1" >/dev/null
}
run a.db topk 32
run a.db topk 64          # a: runs 1, 2
run b.db quest 32
run b.db topk 64          # b: run 2 has the same identity as a's run 2
run b.db completion 32    # b: runs 1..3
rows() { sqlite3 "$1" "SELECT r.method || ':' || r.budget || ':' || (SELECT count(*) FROM head_metrics h WHERE h.run_id = r.run_id)
                        || ':' || (SELECT round(avg(rel_l2), 9) FROM head_metrics h WHERE h.run_id = r.run_id)
                        FROM runs r WHERE status = 'complete' ORDER BY 1"; }
want=$( (rows a.db; rows b.db) | sort -u)
cp b.db b.orig

"$K" merge out.db a.db b.db > merge.out || fail "merge of independent databases: $(cat merge.out)"
grep -q 'merged 4 complete runs from 2 databases' merge.out || fail "merge summary: $(cat merge.out)"
grep -q '1 already there skipped' merge.out || fail "duplicate identity not skipped: $(cat merge.out)"
[ "$(rows out.db)" = "$want" ] || fail "merged rows differ: $(rows out.db) vs $want"
[ "$(sqlite3 out.db 'SELECT count(*) FROM head_metrics WHERE run_id NOT IN (SELECT run_id FROM runs)')" = 0 ] ||
    fail "orphan rows after merge"
[ "$(sqlite3 out.db 'SELECT count(DISTINCT config_hash) FROM runs')" = 4 ] || fail "an identity merged twice"
cmp -s b.db b.orig || fail "merge wrote into a source"
"$K" merge out.db a.db b.db > merge2.out
grep -q 'merged 0 complete runs' merge2.out || fail "second merge added runs: $(cat merge2.out)"

# all or nothing: the second source is junk; the output keeps its 4 runs
echo "not a database" > junk.db
cp out.db out.before
if "$K" merge out.db a.db junk.db 2> e1; then fail "merged a junk source"; fi
grep -q 'junk.db' e1 || fail "junk source not named: $(cat e1)"
grep -q 'nothing merged' e1 || fail "message does not say nothing was merged: $(cat e1)"
[ "$(rows out.db)" = "$want" ] || fail "a failed merge changed the output"
if "$K" merge new.db a.db junk.db 2> e2; then fail "merged a junk source into a new file"; fi
[ ! -e new.db ] || fail "a failed merge left a new output behind"

# an unrelated SQLite file: refused untouched, as merge output and as --db
sqlite3 theirs.db "CREATE TABLE notes(x); INSERT INTO notes VALUES('keep');"
cp theirs.db theirs.orig
if "$K" merge theirs.db a.db 2> e3; then fail "merged into someone else's database"; fi
grep -q 'theirs.db.*not a kvsim database' e3 || fail "foreign output message: $(cat e3)"
if "$K" eval --trace t.h5 --method topk --budget 32 --layers 0 --db theirs.db 2> e4 >/dev/null; then
    fail "eval wrote into someone else's database"
fi
grep -q 'theirs.db.*not a kvsim database' e4 || fail "foreign --db message: $(cat e4)"
cmp -s theirs.db theirs.orig || fail "the foreign database was changed"
[ ! -e theirs.db-wal ] || fail "the foreign database was switched to WAL"
[ "$(sqlite3 theirs.db 'PRAGMA journal_mode')" = delete ] || fail "journal mode of the foreign database changed"

# results that would be discarded
for d in "" ":memory:"; do
    if "$K" eval --trace t.h5 --method topk --budget 32 --layers 0 --db "$d" > o5 2> e5; then
        fail "--db '$d' accepted (results discarded)"
    fi
    [ -s e5 ] || fail "--db '$d': no message"
done
printf 'traces = "t.h5";\naxes = { budget = [16, 32]; };\n' > s.cfg
if "$K" sweep s.cfg --db "" --quiet > /dev/null 2> e6; then fail "sweep --db '' accepted"; fi
grep -q 'empty' e6 || fail "sweep --db '' message: $(cat e6)"
echo "PASS: merge of independent databases, all or nothing, foreign files untouched"
