#!/usr/bin/env bash
# test_report.sh — `kvsim report` on a small database writes PNG + SVG for
# the plots that have data, a placeholder (not a crash) for those without,
# index.html showing them with captions, the CSV data (with one block per
# series), and renders a user plot pair from --plots; clear errors for a
# missing gnuplot and a file that is not a kvsim database.  Plots show what
# they average: a database with two feature maps, two budgets and two host
# bandwidths gives separate lines for each (not one averaged line); the page
# holds its content once; the views join cleanly.
set -euo pipefail
K=${KVSIM_BIN:?KVSIM_BIN not set}
SRC=${KVSIM_SRC:?KVSIM_SRC not set}
T=${KVSIM_TMP:-/tmp}/report
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "SKIP: gnuplot not installed"; exit 77; }
rm -rf "$T"
mkdir -p "$T/user"

"$K" trace gen -o "$T/t.h5" --layers 2 --prefill 1024 --steps 8 --seed 2 >/dev/null
cat > "$T/r.cfg" <<'EOF'
name = "report-test";
traces = "t.h5";
axes = { method = ["topk", "completion"]; budget = [64, 128, 256]; };
EOF
"$K" sweep "$T/r.cfg" --db "$T/r.db" -j 2 --quiet > /dev/null

# a user pair: runs per method (bar chart); and one with a query that has no rows
cat > "$T/user/runs_per_method.sql" <<'EOF'
-- title: Runs per method
-- caption: How many complete runs each method has (a user plot).
SELECT method, COUNT(*) AS n FROM v_runs GROUP BY method ORDER BY method;
EOF
cat > "$T/user/runs_per_method.gp" <<'EOF'
set style fill solid 0.6
set boxwidth 0.6
set yrange [0:*]
plot datafile using 0:2:xtic(1) with boxes notitle
EOF
cat > "$T/user/nothing.sql" <<'EOF'
-- title: Nothing here
SELECT method, budget FROM v_runs WHERE budget < 0;
EOF
cp "$T/user/runs_per_method.gp" "$T/user/nothing.gp"

"$K" report "$T/r.db" -o "$T/out" --plots "$T/user" > "$T/report.out"
cat "$T/report.out"
O=$T/out
for p in error_vs_budget headline_entropy error_vs_entropy runs_per_method; do
    [ -s "$O/$p.png" ] || fail "$p.png missing"
    [ -s "$O/$p.svg" ] || fail "$p.svg missing"
    head -c 8 "$O/$p.png" | od -An -c | grep -q 'P   N   G' || fail "$p.png is not a PNG"
    grep -q '<svg' "$O/$p.svg" || fail "$p.svg is not SVG"
    grep -q "<img src=\"$p.png\"" "$O/index.html" || fail "index.html does not show $p"
done
# the headline data: one block per series (method x entropy bucket), budgets ascending
csv=$O/data/error_vs_budget.csv
head -1 "$csv" | grep -q '^series,budget,err_mean,n_runs$' || fail "csv header: $(head -1 "$csv")"
[ "$(grep -c '^topk,' "$csv")" = 3 ] && [ "$(grep -c '^completion,' "$csv")" = 3 ] || fail "csv rows: $(cat "$csv")"
[ "$(grep -c '^$' "$csv")" = 2 ] || fail "series blocks not separated by two blank lines"
# the error falls as the budget grows, for each method
/usr/bin/python3 - "$csv" <<'EOF' || fail "error does not fall with the budget"
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if r][1:]
for m in ("topk", "completion"):
    e = [float(r[2]) for r in rows if r[0] == m]
    assert len(e) == 3 and e[0] > e[1] > e[2] > 0, (m, e)
EOF
# captions and placeholders: no timing runs here, so latency/pareto have no data
grep -q 'class="caption">Mean relative L2 error' "$O/index.html" || fail "caption missing"
grep -q 'id="pareto"' "$O/index.html" || fail "pareto section missing"
[ "$(grep -c 'class="placeholder"' "$O/index.html")" -ge 3 ] || fail "placeholders missing for plots without data"
[ ! -e "$O/pareto.png" ] || fail "a plot without data has a PNG"
grep -q 'id="nothing"' "$O/index.html" || fail "empty user plot missing from the page"
grep -q '<td>report-test</td>' "$O/index.html" || fail "summary table missing"
grep -q '3 plots\|4 plots' "$T/report.out" || fail "summary line: $(cat "$T/report.out")"

# errors: no gnuplot; not a database; a broken user query
if KVSIM_GNUPLOT=/nonexistent/gnuplot "$K" report "$T/r.db" -o "$T/o2" 2> "$T/e1"; then fail "ran without gnuplot"; fi
grep -q 'gnuplot not found' "$T/e1" || fail "missing-gnuplot message: $(cat "$T/e1")"
echo "not a database" > "$T/junk.db"
if "$K" report "$T/junk.db" -o "$T/o3" 2> "$T/e2"; then fail "accepted a non-database"; fi
grep -q 'junk.db' "$T/e2" || fail "bad-database message: $(cat "$T/e2")"
mkdir -p "$T/bad"
echo "SELECT nope FROM nowhere;" > "$T/bad/broken.sql"
cp "$T/user/runs_per_method.gp" "$T/bad/broken.gp"
if "$K" report "$T/r.db" -o "$T/o4" --plots "$T/bad" 2> "$T/e3" > /dev/null; then fail "broken query not reported"; fi
grep -q 'broken.sql: no such table: nowhere' "$T/e3" || fail "broken-query message: $(cat "$T/e3")"
grep -q 'Query failed' "$T/o4/index.html" || fail "broken query not shown in the page"
[ -s "$T/o4/error_vs_budget.png" ] || fail "one broken plot stopped the others"
# ---- plots that show what they average -------------------------------------
cat > "$T/v.cfg" <<EOF
name = "vary";
traces = "t.h5";
hw = "$SRC/sim/hw/h200_pcie5.cfg";
base = { layers = "0"; };
axes = {
  method = ["topk", "completion"];
  feature_map = ["favor", "taylor"];
  budget = [64, 128];
  hw = { links = { host_to_gpu = { bw_bytes_per_s = [16e9, 64e9]; }; }; };
};
EOF
"$K" sweep "$T/v.cfg" --db "$T/v.db" -j 2 --quiet > /dev/null
"$K" report "$T/v.db" -o "$T/vout" > /dev/null || fail "report of the varied database failed"
V=$T/vout/data
# error vs budget: completion once per map (topk has no map: one line), 2 budgets each
for s in "completion feature_map=favor" "completion feature_map=taylor"; do
    [ "$(grep -c "^$s,[0-9]" "$V/error_vs_budget.csv")" = 2 ] || fail "error_vs_budget: no line '$s': $(cat "$V/error_vs_budget.csv")"
done
[ "$(grep -c '^topk,[0-9]' "$V/error_vs_budget.csv")" = 2 ] || fail "error_vs_budget: topk split by a map it does not use"
if grep -q '^completion,' "$V/error_vs_budget.csv"; then fail "error_vs_budget: a completion line averaged over maps"; fi
# the two maps really differ (else the split would prove nothing)
/usr/bin/python3 - "$V/error_vs_budget.csv" <<'PY' || fail "the two maps give the same error"
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if r][1:]
f = {r[1]: float(r[2]) for r in rows if r[0] == "completion feature_map=favor"}
t = {r[1]: float(r[2]) for r in rows if r[0] == "completion feature_map=taylor"}
assert f and f.keys() == t.keys() and any(abs(f[b] - t[b]) > 1e-9 for b in f), (f, t)
PY
# latency vs bandwidth: one line per budget (and map), not the mean of both budgets
grep -q '^topk budget=64,' "$V/latency_vs_bw.csv" && grep -q '^topk budget=128,' "$V/latency_vs_bw.csv" ||
    fail "latency_vs_bw averages budgets: $(cat "$V/latency_vs_bw.csv")"
grep -q '^completion budget=64 feature_map=favor,' "$V/latency_vs_bw.csv" || fail "latency_vs_bw: maps averaged"
# bytes by link: one line per bandwidth
grep -q '^topk hbm_read hw.links.host_to_gpu.bw_bytes_per_s=16000000000,' "$V/bytes_by_link.csv" &&
grep -q '^topk hbm_read hw.links.host_to_gpu.bw_bytes_per_s=64000000000,' "$V/bytes_by_link.csv" ||
    fail "bytes_by_link averages bandwidths: $(head -5 "$V/bytes_by_link.csv")"
# every completion point of the timing plots is one run here (one trace, one seed:
# nothing to average; topk points hold its favor and taylor runs, which are the same run)
for p in latency_vs_bw bytes_by_link; do
    awk -F, '/^completion/ && $NF != 1 { bad = 1 } END { exit bad }' "$V/$p.csv" || fail "$p: points that average runs"
done
grep -q 'Averaged: traces and feature-map seeds only' "$T/vout/index.html" || fail "captions do not say what is averaged"
# the page holds its content once (the template's comment is not filled in)
[ "$(grep -c '<section class="plot" id="error_vs_budget"' "$T/vout/index.html")" = 1 ] || fail "index.html holds its plots twice"
[ "$(grep -c '<h1>' "$T/vout/index.html")" = 1 ] || fail "index.html has two titles"
grep -q '@PLOTS@' "$T/vout/index.html" || fail "the template comment lost its placeholder names"

# ---- views: v_runs is the only one with settings; per-run views join cleanly
Q() { sqlite3 -cmd ".read $SRC/reports/views.sql" "$T/v.db" "$@"; }
views="v_runs v_run_error v_run_error_by_entropy v_run_bytes v_run_bytes_long v_run_latency v_run_label"
for a in $views; do for b in $views; do
    [ "$a" \< "$b" ] || continue
    for c in $(Q "SELECT name FROM pragma_table_info('$a') UNION ALL SELECT name FROM pragma_table_info('$b')" | grep -v '^run_id$'); do
        Q "SELECT $c FROM $a JOIN $b USING (run_id) LIMIT 1" > /dev/null 2> "$T/join.err" ||
            fail "$a JOIN $b: $(cat "$T/join.err")"
    done
done; done
# the error plots average over hardware settings only because they do not change the error
[ "$(Q "SELECT max(d) < 1e-12 FROM (SELECT max(e.err_mean) - min(e.err_mean) AS d FROM v_runs r
        JOIN v_run_error e USING (run_id) GROUP BY r.method, r.feature_map, r.budget)")" = 1 ] ||
    fail "runs that differ only in hardware have different errors: the error plots must not average them"
[ "$(Q "SELECT count(*) FROM v_runs WHERE method='topk' AND (feature_map IS NOT NULL OR features IS NOT NULL OR sel IS NOT NULL)")" = 0 ] ||
    fail "v_runs shows completion settings on topk runs"
[ "$(Q "SELECT count(DISTINCT feature_map) FROM v_runs WHERE method='completion'")" = 2 ] || fail "v_runs: maps of completion runs"
Q "SELECT stall_mean_us, stall_share FROM v_run_summary LIMIT 1" > /dev/null || fail "v_run_summary has no stall column"
[ "$(Q "SELECT count(*) FROM v_run_summary WHERE stall_mean_us IS NULL")" = 0 ] || fail "stall missing for timing runs"
echo "PASS: report with $(ls "$O"/*.png | wc -l) PNGs; varied settings plotted as separate lines; views join cleanly"
