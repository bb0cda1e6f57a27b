#!/usr/bin/env bash
# test_report.sh — `kvsim report` on a small database writes PNG + SVG for
# the plots that have data, a placeholder (not a crash) for those without,
# index.html showing them with captions, the CSV data (with one block per
# series), and renders a user plot pair from --plots; clear errors for a
# missing gnuplot and a file that is not a kvsim database.
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
echo "PASS: report with $(ls "$O"/*.png | wc -l) PNGs"
