#!/usr/bin/env bash
# test_serve_cli.sh — kvsim serve end to end on the shipped sample trace:
# the documented example runs and writes a complete run with its serve_*
# tables; the same seed gives the same rows; bad input is a one-line error
# with the file (and line) and leaves no complete run; energy is recorded
# for kvsim run and serve; the report renders the serve plots.
set -u
: "${KVSIM_BIN:?}" "${KVSIM_SRC:?}" "${KVSIM_TMP:?}"
T="$KVSIM_TMP/serve_sh"
rm -rf "$T"; mkdir -p "$T"
fail() { echo "FAIL: $*"; exit 1; }
command -v sqlite3 >/dev/null || { echo "SKIP: sqlite3 CLI not installed"; exit 77; }
W="$KVSIM_SRC/reports/workloads/example.cfg"
HW="$KVSIM_SRC/sim/hw/h200_pcie5.cfg"
common=(--workload "$W" --hw "$HW" --model llama-3.1-8b --method topk --budget-frac 0.04 --quiet
        --wset requests.count=40 --wset requests.rate_per_s=20 --set gpu.hbm_capacity_bytes=40e9)

# 1. runs, twice, into two databases: identical rows (wall time aside)
"$KVSIM_BIN" serve "${common[@]}" --db "$T/a.db" || fail "serve run a"
"$KVSIM_BIN" serve "${common[@]}" --db "$T/b.db" || fail "serve run b"
q="SELECT r.kind, r.status, r.method, r.config_hash FROM runs r;
   SELECT * FROM serve_requests; SELECT * FROM serve_tbt; SELECT * FROM serve_occupancy;
   SELECT * FROM link_util; SELECT name, value FROM run_values WHERE name <> 'serve_wall_s' ORDER BY name;"
sqlite3 "$T/a.db" "$q" > "$T/a.txt" || fail "query a"
sqlite3 "$T/b.db" "$q" > "$T/b.txt" || fail "query b"
cmp -s "$T/a.txt" "$T/b.txt" || { diff "$T/a.txt" "$T/b.txt" | head; fail "same seed, different rows"; }
[ "$(sqlite3 "$T/a.db" "SELECT kind || status FROM runs")" = "servecomplete" ] || fail "run not complete"
[ "$(sqlite3 "$T/a.db" "SELECT COUNT(*) FROM serve_requests")" = 40 ] || fail "serve_requests rows"
# every request: tokens = decode + 1, one TBT row per decode step, ordered times
sqlite3 "$T/a.db" "SELECT COUNT(*) FROM serve_requests WHERE output_tokens <> decode_steps + 1
                   OR first_token_ns < arrival_ns OR done_ns < first_token_ns" | grep -qx 0 || fail "request invariants"
sqlite3 "$T/a.db" "SELECT COUNT(*) FROM serve_requests q WHERE decode_steps <>
                   (SELECT COUNT(*) FROM serve_tbt t WHERE t.run_id = q.run_id AND t.request = q.request)" \
  | grep -qx 0 || fail "serve_tbt rows per request"
# offload happened (60 GB HBM) and moved bytes; energy recorded
off=$(sqlite3 "$T/a.db" "SELECT value > 0 FROM run_values WHERE name = 'serve_offload_frac'")
[ "$off" = 1 ] || fail "expected offload with 60 GB HBM"
sqlite3 "$T/a.db" "SELECT value > 0 FROM run_values WHERE name = 'serve_energy_j_per_token'" | grep -qx 1 \
  || fail "no serve energy"
# the per-request bytes add up to the run's host->GPU bytes
sqlite3 "$T/a.db" "SELECT (SELECT SUM(bytes_host_to_gpu) FROM serve_requests) -
                          (SELECT value FROM run_values WHERE name = 'serve_bytes_host_to_gpu')" \
  | awk '{ if ($1 < -64 || $1 > 64) exit 1 }' || fail "per-request bytes do not add up"
# another seed gives other rows
"$KVSIM_BIN" serve "${common[@]}" --wset seed=2 --db "$T/c.db" || fail "serve run c"
sqlite3 "$T/c.db" "$q" > "$T/c.txt"
cmp -s "$T/a.txt" "$T/c.txt" && fail "seed 2 gave the same rows as seed 1"

# 2. bad input: one line naming the file (and line); no complete run
bad() {   # expected-substring, then args
  local want="$1"; shift
  local out; out=$("$KVSIM_BIN" serve "$@" 2>&1 >/dev/null); local rc=$?
  [ $rc -ne 0 ] || fail "accepted: $*"
  echo "$out" | grep -qF -- "$want" || fail "message '$out' lacks '$want'"
  [ "$(echo "$out" | wc -l)" -eq 1 ] || fail "not one line: $out"
}
printf 'traces = ["%s"];\nrequests = {\n  count = 5;\n  rate_per_s = -1.0;\n};\n' \
  "$KVSIM_SRC/traces/sample_pandas_2k.h5" > "$T/bad_rate.cfg"
bad "bad_rate.cfg:4: requests.rate_per_s" --workload "$T/bad_rate.cfg" --hw "$HW" --method full --db "$T/bad.db"
printf 'traces = ["%s"];\nslo = { tbt_p99_ms = -5.0; };\nlist = ( { arrival_s = 0.0; context = 100; decode = 3; } );\n' \
  "$KVSIM_SRC/traces/sample_pandas_2k.h5" > "$T/bad_slo.cfg"
bad "bad_slo.cfg:2: slo.tbt_p99_ms" --workload "$T/bad_slo.cfg" --hw "$HW" --method full --db "$T/bad.db"
printf 'traces = ["%s"];\nlist = ( { arrival_s = 0.0; context = 0; decode = 3; } );\n' \
  "$KVSIM_SRC/traces/sample_pandas_2k.h5" > "$T/bad_len.cfg"
bad "bad_len.cfg:2: list[0].context" --workload "$T/bad_len.cfg" --hw "$HW" --method full --db "$T/bad.db"
bad "no_such.cfg: cannot open workload file" --workload "$T/no_such.cfg" --hw "$HW" --method full --db "$T/bad.db"
printf 'traces = ["%s"];\nlist = ( { arrival_s = 0.0; context = 2000000; decode = 3; } );\n' \
  "$KVSIM_SRC/traces/sample_pandas_2k.h5" > "$T/huge.cfg"
bad "cannot fit HBM" --workload "$T/huge.cfg" --hw "$HW" --model llama-3.1-8b --method full --db "$T/bad.db"
bad "override requests.rate_per_s=0: requests.rate_per_s must be in (0" --workload "$W" --hw "$HW" --method full --db "$T/bad.db" --wset requests.rate_per_s=0
# one value for the window in the method and the policy (it used to be the
# method's, silently, whatever the override said)
bad "window=64 and hw.policy.anchor_window_tokens=1024 conflict" --workload "$W" --hw "$HW" --method topk \
  --budget-frac 0.04 --window 64 --set policy.anchor_window_tokens=1024 --db "$T/bad.db"
if [ -f "$T/bad.db" ]; then
  [ "$(sqlite3 "$T/bad.db" "SELECT COUNT(*) FROM runs WHERE status = 'complete'")" = 0 ] || fail "bad input left a complete run"
fi

# 3. kvsim run records energy by component
"$KVSIM_BIN" run --trace "$KVSIM_SRC/traces/sample_pandas_2k.h5" --hw "$HW" --model llama-3.1-8b --method topk \
  --budget-frac 0.04 --db "$T/run.db" --quiet --no-progress || fail "kvsim run"
sqlite3 "$T/run.db" "SELECT COUNT(*) FROM run_values WHERE name LIKE 'energy_%' AND value >= 0" | grep -qx 8 \
  || fail "kvsim run: energy values"
# components add up to the total
sqlite3 "$T/run.db" "SELECT ABS((SELECT value FROM run_values WHERE name='energy_j_per_step') -
   (SELECT SUM(value) FROM run_values WHERE name IN ('energy_hbm_j_per_step','energy_dram_j_per_step',
    'energy_pcie_j_per_step','energy_nvme_j_per_step','energy_compute_j_per_step','energy_idle_j_per_step'))) < 1e-9" \
  | grep -qx 1 || fail "energy components do not add up"

# 4. report: the serve plots render from a database with serve runs
if command -v gnuplot >/dev/null || [ -n "${KVSIM_GNUPLOT:-}" ]; then
  "$KVSIM_BIN" serve "${common[@]}" --wset requests.rate_per_s=5 --db "$T/a.db" || fail "serve run rate 5"
  "$KVSIM_BIN" report "$T/a.db" -o "$T/report" --reports "$KVSIM_SRC/reports" > "$T/report.log" 2>&1 \
    || { cat "$T/report.log"; fail "report"; }
  for p in serve_throughput_vs_rate serve_tbt_vs_offload; do
    [ -s "$T/report/$p.png" ] || fail "report: no $p.png"
  done
else
  echo "note: gnuplot not installed: report part skipped"
fi
echo "test_serve_cli.sh: ok"
