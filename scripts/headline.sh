#!/usr/bin/env bash
# The seed's headline comparison in one command: runs the example sweep
# reports/sweeps/headline.cfg (completion vs Top-K vs Quest at matched
# budgets on the three captured traces, with H200 timing) and renders its
# report.  Resumable: re-running skips completed runs.
#   scripts/headline.sh [DB [OUTDIR]]     (defaults out/headline.db, out/headline-report)
# Needs ../shared/traces, or KVSIM_TRACE_DIR pointing at the traces.
set -euo pipefail
cd "$(dirname "$0")/.."
db=${1:-out/headline.db}
dir=${2:-out/headline-report}
[ -x build/kvsim ] || { echo "build kvsim first: scripts/setup.sh" >&2; exit 2; }
mkdir -p "$(dirname "$db")"
./build/kvsim sweep reports/sweeps/headline.cfg --db "$db" -j "$(nproc)"
./build/kvsim report "$db" -o "$dir"
echo "open $dir/index.html"
