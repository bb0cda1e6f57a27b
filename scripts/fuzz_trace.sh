#!/usr/bin/env bash
# fuzz_trace.sh — build the libFuzzer target tests/fuzz/fuzz_trace.c with clang
# (ASan + UBSan, the library instrumented for coverage) in its own build dir
# and fuzz the trace reader + validator for N seconds (default 60).
#
#   scripts/fuzz_trace.sh [SECONDS]      (0: only re-sort the existing findings)
#   env: KVSIM_FUZZ_BUILD (default <repo>/build-fuzz), JOBS (default 2)
#
# Seed corpus: small valid traces written by `kvsim trace gen` (f16/f32,
# gzip on/off, GQA and MHA) plus a tiny cut of traces/sample_synthetic.h5.
# Runs libFuzzer with -fork=1 -ignore_crashes=1 so that one finding does not
# end the run; then replays every crash artifact and sorts it by the top
# stack frame: "ours" (a kvs_* function: a bug to fix) or "inside HDF5"
# (libhdf5 trusting corrupt metadata; `kvsim trace validate` contains those
# by checking each file in a child process).  Exit 1 when any finding is ours.
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
bdir=${KVSIM_FUZZ_BUILD:-$root/build-fuzz}
jobs=${JOBS:-2}
command -v clang >/dev/null || { echo "fuzz_trace.sh: clang not found" >&2; exit 2; }

cmake -S "$root" -B "$bdir" -DCMAKE_C_COMPILER=clang -DKVSIM_FUZZ=ON -DKVSIM_SANITIZE=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVSIM_CUDA=OFF -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null
cmake --build "$bdir" -j"$jobs" --target fuzz_trace kvsim >/dev/null

export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1
seeds=$bdir/fuzz-seeds
corpus=$bdir/fuzz-corpus
art=$bdir/fuzz-artifacts
mkdir -p "$seeds" "$corpus" "$art"
export KVSIM_FUZZ_TMP=$bdir
k="$bdir/kvsim"
if [ -z "$(ls -A "$seeds")" ]; then
  "$k" trace gen -o "$seeds/a.h5" --layers 1 --heads 2 --kv-heads 1 --head-dim 8 --prefill 16 --steps 1 --gzip 0 --retrieval 2 --window 4 >/dev/null
  "$k" trace gen -o "$seeds/b.h5" --layers 2 --heads 4 --kv-heads 2 --head-dim 8 --prefill 16 --steps 2 --gzip 1 --dtype f32 --retrieval 2 --window 4 >/dev/null
  "$k" trace gen -o "$seeds/c.h5" --layers 1 --heads 2 --kv-heads 2 --head-dim 16 --prefill 32 --steps 3 --gzip 6 --kind sink --window 8 >/dev/null
  "$k" trace cut "$root/traces/sample_synthetic.h5" -o "$seeds/d.h5" --layers 1 --steps 0:2 --context 20 --gzip 0 >/dev/null
fi
maxlen=$(( $(stat -c %s "$seeds"/* | sort -n | tail -1) + 1024 ))
if [ "$secs" -gt 0 ]; then
echo "fuzzing for ${secs}s (seeds: $(ls "$seeds" | wc -l), max_len $maxlen, artifacts in $art)"
"$bdir/tests/fuzz_trace" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len="$maxlen" \
    -artifact_prefix="$art/" "$corpus" "$seeds" 2>&1 | grep -E "^#|INFO: fuzzed|crash|DONE" | tail -15 || true
fi

ours=0; hdf5=0
shopt -s nullglob
for a in "$art"/crash-* "$art"/timeout-* "$art"/oom-*; do
  out=$(timeout 120 "$bdir/tests/fuzz_trace" -timeout=10 "$a" 2>&1 || true)
  top=$(printf '%s\n' "$out" | grep -E '^ *#[0-9]+ ' | grep -v -E 'libasan|asan_|__interceptor|__sanitizer|libc\.so|libubsan|memcpy|memmove|strlen|fuzzer::|libFuzzer|in (main|_start)|__libc_start|sigsuspend|pthread' | head -1 || true)
  if ! printf '%s\n' "$out" | grep -q -E 'ERROR: |ALARM: |runtime error'; then
    echo "NOREPRO: $(basename "$a") (does not fail when replayed alone)"
  elif printf '%s\n' "$top" | grep -q -E ' in kvs_|/work/.*/(traces|sim|models)/'; then
    ours=$((ours+1)); echo "OURS:  $(basename "$a"): $top"
  else
    hdf5=$((hdf5+1)); echo "HDF5:  $(basename "$a"): ${top:-<no frame>}"
  fi
done
echo "findings: $ours in our code, $hdf5 inside HDF5 (corpus $(ls "$corpus" | wc -l) inputs)"
[ "$ours" -eq 0 ]
