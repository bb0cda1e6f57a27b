#!/bin/bash
# gpu_fidelity.sh — the whole GPU device run in one call: build the CUDA
# kernels and kvsim-gpu with nvcc (no CMake dependencies needed there),
# check them against the CPU references (random inputs and exported trace
# layers), time the kernels, measure the fidelity configurations.
#
# usage: scripts/gpu_fidelity.sh OUTDIR [EXPORTDIR]
#   OUTDIR     where logs and CSVs go (on the device machine: $OUT)
#   EXPORTDIR  trace exports made here by sim/gpu/export_trace.py
#              (default build-gpu/export; carried with the call)
# Output: OUTDIR/gpu_log.txt, attn.csv, torch_attn.csv, compbench.csv, e2e.csv,
# torch_e2e.csv (and bench.csv, measured.csv with WITH_LEGACY=1).
#
# Before the device call, here (h5py needs Debian's python):
#   for t in pandas_0:"0 5" sklearn_1:3 matplotlib_2:1; do
#     /usr/bin/python3 sim/gpu/export_trace.py ../shared/traces/${t%%:*}.h5 build-gpu/export/${t%%:*} ${t#*:}; done
# then run this script with carry = ["build-gpu/export"]; afterwards, here:
#   kvsim-gpu-host predict OUT/measured.csv reports/fidelity/predicted.csv --calib OUT/bench.csv
#   kvsim-gpu-host import OUT/measured.csv results.db reports/fidelity/predicted.csv
# SKIP_CHECKS=1 leaves out the selftest and trace check (a timing-only rerun
# of unchanged kernels); SKIP_ATTN / SKIP_COMP / SKIP_E2E / SKIP_TORCHE2E leave
# out attnbench (+ PyTorch), compbench (the selection chains and the
# completion estimate alone), the e2e steps and the PyTorch e2e reference;
# WITH_LEGACY=1 adds the per-layer bench and fidelity study of FIDELITY.md's
# first part; E2E_QUICK=quick: 8k only (e2e and compbench).  Every step runs
# under `timeout` (T_SELFTEST, T_CHECK, T_TORCH, T_ATTN, T_COMP, T_E2E,
# T_TORCHE2E, T_BENCH, T_FIDELITY seconds) so that a hung kernel cannot eat
# the device lease.
# Exit: 0 all steps ran and the checks passed; 1 otherwise; 77 no GPU.
set -u -o pipefail
OUTD=${1:?usage: gpu_fidelity.sh OUTDIR [EXPORTDIR]}
EXP=${2:-build-gpu/export}
mkdir -p "$OUTD"
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
BIN=build-gpu-dev
mkdir -p $BIN && rm -f $BIN/*.o $BIN/kvsim-gpu
log="$OUTD/gpu_log.txt"
: >"$log"
say() { echo "== $*" | tee -a "$log"; }
rc=0
say "machine"
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv
  "$NVCC" --version | tail -1; nproc
  dpkg -l libhdf5-dev libsqlite3-dev libgsl-dev libconfig-dev libcunit1-dev 2>&1 | grep -E '^(ii|un|dpkg)' || true
} 2>&1 | tee -a "$log"
command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: no GPU" | tee -a "$log"; exit 77; }

say "build ($NVCC, sm_90)"
t0=$(date +%s)
FL="-O3 -arch=sm_90 -std=c++17 -Imodels/cuda -Isim/gpu"
pids=()
for f in models/cuda/kvs_cuda_attn.cu models/cuda/kvs_cuda_select.cu models/cuda/kvs_cuda_decode.cu sim/gpu/kvsim_gpu.cu sim/gpu/gpu_ref.cu sim/gpu/gpu_e2e.cu; do
  b=$(basename "$f"); "$NVCC" $FL -Xptxas -v -c "$f" -o "$BIN/$b.o" >"$BIN/$b.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || rc=1; done
cat $BIN/*.log | grep -E 'error|warning|spill stores' | sort | uniq -c | tee -a "$log"
"$NVCC" -arch=sm_90 -o $BIN/kvsim-gpu $BIN/*.o -lcublas 2>&1 | tee -a "$log"
[ -x $BIN/kvsim-gpu ] || { echo "build failed" | tee -a "$log"; cat $BIN/*.log | grep -B2 -A3 error | tee -a "$log"; exit 1; }
echo "build took $(( $(date +%s) - t0 )) s" | tee -a "$log"
# registers of the completion estimate's instantiations (FIDELITY.md: the G = 1/3
# builds were slower per block before their k' rows were read as float4)
grep -A4 "Compiling entry function '_Z10est_kernel" $BIN/kvs_cuda_attn.cu.log | grep -E "Compiling|Used" |
  sed -E "s/.*est_kernelILi([0-9]+)ELi([0-9]+)E.*/est_kernel d \1 G \2:/; s/ptxas info *: //" | paste -d' ' - - | tee -a "$log"

say "selftest (random inputs vs double reference)"
if [ -n "${SKIP_CHECKS:-}" ]; then
  echo "SKIP_CHECKS set: selftest and trace check not run" | tee -a "$log"
else
  timeout ${T_SELFTEST:-60} $BIN/kvsim-gpu selftest 2>&1 | tee -a "$log" || rc=1
fi
say "check (exported trace layers vs double reference and o_ref)"
if [ -n "${SKIP_CHECKS:-}" ]; then
  :
elif ls "$EXP"/*/meta.txt >/dev/null 2>&1; then
  timeout ${T_CHECK:-60} $BIN/kvsim-gpu check $(dirname $(ls "$EXP"/*/meta.txt)) 2>&1 | tee -a "$log" || rc=1
else
  echo "no exports under $EXP: skipped" | tee -a "$log"
fi
PY=${PYTHON:-python3}
if [ -z "${SKIP_ATTN:-}" ]; then
  say "attnbench (tensor-core decode attention vs PyTorch SDPA, same GPU)"
  timeout ${T_TORCH:-150} env PYTHONUNBUFFERED=1 $PY sim/gpu/torch_ref.py attn "$OUTD/torch_attn.csv" 2>&1 | tee -a "$log" || echo "torch attn reference failed" | tee -a "$log"
  timeout ${T_ATTN:-120} $BIN/kvsim-gpu bench "$OUTD/attn.csv" "$OUTD/torch_attn.csv" 2>&1 | tee -a "$log" || rc=1
fi
if [ -z "${SKIP_COMP:-}" ]; then
  say "compbench (selection chains and completion estimate alone, in CUDA graphs)"
  timeout ${T_COMP:-240} $BIN/kvsim-gpu compbench "$OUTD/compbench.csv" ${E2E_QUICK:-} 2>&1 | tee -a "$log" || rc=1
fi
if [ -z "${SKIP_E2E:-}" ]; then
  say "e2e (whole decode steps in one CUDA graph)"
  timeout ${T_E2E:-240} $BIN/kvsim-gpu e2e "$OUTD/e2e.csv" ${E2E_QUICK:-} 2>&1 | tee -a "$log" || rc=1
fi
if [ -z "${SKIP_TORCHE2E:-}" ]; then
  say "torch e2e reference (issue 12's nine configurations)"
  timeout ${T_TORCHE2E:-150} env PYTHONUNBUFFERED=1 $PY sim/gpu/torch_ref.py e2e "$OUTD/torch_e2e.csv" 2>&1 | tee -a "$log" || echo "torch e2e reference failed" | tee -a "$log"
fi
if [ -n "${WITH_LEGACY:-}" ]; then
say "bench (kernel speed)"
timeout ${T_BENCH:-90} $BIN/kvsim-gpu bench "$OUTD/bench.csv" 2>&1 | tee -a "$log" || rc=1
say "fidelity (measured step latency)"
# the attention variant that bench found fastest for one decode step
V=$(grep -o 'step_variant [0-9]' "$log" | awk '{print $2}' | tail -1)
KVSIM_GPU_VARIANT=${V:-4} timeout ${T_FIDELITY:-150} $BIN/kvsim-gpu fidelity "$OUTD/measured.csv" ${FIDELITY_QUICK:-} 2>&1 | tee -a "$log" || rc=1
fi
nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu --format=csv 2>&1 | tee -a "$log"
say "done rc=$rc"
exit $rc
