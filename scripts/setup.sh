#!/usr/bin/env bash
# README command 1: install dependencies, build, run the main job on the
# shipped default (a small sample trace and the H200 + PCIe Gen5 hierarchy).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
mkdir -p out
rm -f out/demo.db out/demo.db-wal out/demo.db-shm
./build/kvsim trace validate --check-ref traces/sample_pandas_2k.h5
./build/kvsim run --trace traces/sample_pandas_2k.h5 --hw sim/hw/h200_pcie5.cfg \
  --method completion --budget-frac 0.04 --sinks 4 --window 16 --db out/demo.db
./build/kvsim run --trace traces/sample_pandas_2k.h5 --hw sim/hw/h200_pcie5.cfg \
  --method topk --budget-frac 0.04 --sinks 4 --window 16 --db out/demo.db
echo
echo "Results are in out/demo.db; try:"
echo "  sqlite3 out/demo.db \"SELECT r.method, avg(h.rel_l2) FROM runs r JOIN head_metrics h USING(run_id) GROUP BY r.run_id\""
