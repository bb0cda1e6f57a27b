#!/usr/bin/env bash
# fuzz.sh — build kvsim's libFuzzer targets with clang (ASan + UBSan, the
# library instrumented for coverage) and fuzz each for N seconds.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     targets: trace hw sweep eval (default: all)
#     SECONDS per target, default 60; 0 = only replay and sort the findings
#   env: KVSIM_FUZZ_BUILD (default <repo>/build-fuzz), JOBS (build jobs, default 2)
#   CI: scripts/fuzz.sh 20     (about 20 s per target + the build)
#
# Targets (tests/fuzz/fuzz_*.c):
#   trace   a would-be kvtrace file through probe -> open -> reads -> validate
#   hw      a would-be hardware config through kvs_hw_load (seeds: sim/hw/*.cfg)
#   sweep   a would-be sweep file through kvs_sweep_load (seeds: reports/sweeps/*.cfg)
#   eval    small traces with fuzzed geometry and raw values through kvs_run_execute
# libFuzzer runs with -fork=1 -ignore_crashes=1 so one finding does not end a
# run; every artifact is then replayed alone and sorted by its top stack frame:
#   OURS     a kvsim function or source file: a bug to fix          -> exit 1
#   LIB      inside a library (libconfig, sqlite, ...): reaches kvsim -> exit 1
#   HDF5     (trace target) inside libhdf5.  The trace target fuzzes with
#            KVSIM_FUZZ_NO_PROBE=1 (the file opened straight in-process: ~10x
#            the executions of probing each input in a child, and it finds
#            libhdf5's own crashes); each HDF5 finding must then be CONTAINED:
#            replayed through the target WITH the probe it must not crash, and
#            every kvsim command that opens a trace (trace info / validate /
#            cut, eval) must exit non-zero with a line naming the file and no
#            signal death.  Not contained -> exit 1.
# Inputs the probe-mode target saw crash/hang HDF5 in its child (contained-*)
# are replayed without the probe too, so a crash of OUR code inside the
# probe's child is still found.
set -uo pipefail
secs=${1:-60}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(trace hw sweep eval)
root=$(cd "$(dirname "$0")/.." && pwd)
bdir=${KVSIM_FUZZ_BUILD:-$root/build-fuzz}
jobs=${JOBS:-2}
command -v clang >/dev/null || { echo "fuzz.sh: clang not found (KVSIM_WITH_FUZZ=1 scripts/deps.sh)" >&2; exit 2; }

build_targets=(kvsim); for t in "${targets[@]}"; do
  case $t in trace|hw|sweep|eval) build_targets+=("fuzz_$t");; *) echo "fuzz.sh: unknown target '$t'" >&2; exit 2;; esac
done
cmake -S "$root" -B "$bdir" -DCMAKE_C_COMPILER=clang -DKVSIM_FUZZ=ON -DKVSIM_SANITIZE=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVSIM_CUDA=OFF -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null \
  || { echo "fuzz.sh: cmake configure failed" >&2; exit 2; }
cmake --build "$bdir" -j"$jobs" --target "${build_targets[@]}" >"$bdir/fuzz-build.log" 2>&1 \
  || { tail -20 "$bdir/fuzz-build.log"; echo "fuzz.sh: build failed" >&2; exit 2; }

export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:quarantine_size_mb=16:malloc_context_size=10
export UBSAN_OPTIONS=print_stacktrace=1
export KVSIM_FUZZ_TMP=$bdir/fuzz-tmp KVSIM_SRC=$root
export KVSIM_PROBE_TIMEOUT_S=${KVSIM_PROBE_TIMEOUT_S:-10}
mkdir -p "$KVSIM_FUZZ_TMP"
k="$bdir/kvsim"
total_ours=0; total_lib=0; total_contained=0; total_cmdfail=0

# top stack frame that is not the sanitizer, libc or libFuzzer
top_frame() {
  grep -E '^ *#[0-9]+ ' | grep -v -E 'libasan|asan_|__interceptor|__sanitizer|libc\.so|libubsan|memcpy|memmove|strlen|fuzzer::|libFuzzer|in (main|_start)|__libc_start|sigsuspend|pthread|abort|raise' | head -1
}
is_ours() { grep -q -E ' in kvs_|/(traces|sim|models|tests/fuzz)/[a-z_]+\.c'; }

seed_dir() {   # seeds of a target into $1
  local t=$1 d=$2
  mkdir -p "$d"
  [ -n "$(ls -A "$d")" ] && return
  case $t in
    trace)
      "$k" trace gen -o "$d/a.h5" --layers 1 --heads 2 --kv-heads 1 --head-dim 8 --prefill 16 --steps 1 --gzip 0 --retrieval 2 --window 4 >/dev/null
      "$k" trace gen -o "$d/b.h5" --layers 2 --heads 4 --kv-heads 2 --head-dim 8 --prefill 16 --steps 2 --gzip 1 --dtype f32 --retrieval 2 --window 4 >/dev/null
      "$k" trace gen -o "$d/c.h5" --layers 1 --heads 2 --kv-heads 2 --head-dim 16 --prefill 32 --steps 3 --gzip 6 --kind sink --window 8 >/dev/null
      "$k" trace cut "$root/traces/sample_synthetic.h5" -o "$d/d.h5" --layers 1 --steps 0:2 --context 20 --gzip 0 >/dev/null
      cp "$root"/tests/fuzz/corpus_hostile/*.h5 "$d/" 2>/dev/null ;;
    hw) cp "$root"/sim/hw/*.cfg "$d/" ;;
    sweep) cp "$root"/reports/sweeps/*.cfg "$d/" ;;
    eval)   # 12 header bytes + finite values: one seed per method, f16 and f32
      python3 - "$d" <<'PY'
import random, struct, sys
r = random.Random(5)
for m in range(5):
    hdr = bytes([0, 1, 1, 1, 16, 1, m % 2, m, 8, 0x1a, 2 | (16 if m == 2 else 0), 0])
    if m % 2:
        vals = b"".join(struct.pack("<f", r.uniform(-2, 2)) for _ in range(200))
    else:
        vals = b"".join(struct.pack("<e", r.uniform(-2, 2)) for _ in range(400))
    open("%s/m%d" % (sys.argv[1], m), "wb").write(hdr + vals)
PY
      ;;
  esac
}

for t in "${targets[@]}"; do
  fz="$bdir/tests/fuzz_$t"
  seeds=$bdir/fuzz-$t/seeds; corpus=$bdir/fuzz-$t/corpus; art=$bdir/fuzz-$t/artifacts
  cont=$bdir/fuzz-$t/contained
  mkdir -p "$seeds" "$corpus" "$art" "$cont"
  seed_dir "$t" "$seeds"
  maxlen=$(( $(stat -c %s "$seeds"/* | sort -n | tail -1) + 1024 ))
  [ "$t" = eval ] && maxlen=4096
  execs="-"
  np=0; [ "$t" = trace ] && np=1     # the trace target fuzzes without the probe (see above)
  if [ "$secs" -gt 0 ]; then
    log=$bdir/fuzz-$t/run.log
    KVSIM_FUZZ_NO_PROBE=$np KVSIM_FUZZ_CONTAINED=$cont "$fz" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -max_total_time="$secs" -timeout=25 -rss_limit_mb=2560 -max_len="$maxlen" \
        -artifact_prefix="$art/" "$corpus" "$seeds" >"$log" 2>&1
    execs=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -E 's/^#([0-9]+).*/\1/')
    [ -n "$execs" ] || execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{s+=$2} END{print s+0}')
  fi
  ours=0; lib=0; contained=0; cmdfail=0
  shopt -s nullglob
  for a in "$art"/crash-* "$art"/timeout-* "$art"/oom-* "$art"/leak-*; do
    out=$(KVSIM_FUZZ_NO_PROBE=$np timeout 120 "$fz" -timeout=25 "$a" 2>&1)
    top=$(printf '%s\n' "$out" | top_frame)
    if ! printf '%s\n' "$out" | grep -q -E 'ERROR: |ALARM: |runtime error|INVARIANT|out-of-memory'; then
      echo "  NOREPRO $t: $(basename "$a") (does not fail when replayed alone)"
    elif printf '%s\n' "$top" | is_ours || printf '%s\n' "$out" | grep -q INVARIANT; then
      ours=$((ours+1)); echo "  OURS    $t: $(basename "$a"): ${top:-$(printf '%s\n' "$out" | grep -m1 -E 'ERROR|INVARIANT|runtime error')}"
    elif [ "$t" = trace ]; then
      echo "  HDF5    $t: $(basename "$a"): ${top:-<no frame: hang or timeout>}"
      cp "$a" "$cont/contained-$(basename "$a").h5"
    else
      lib=$((lib+1)); echo "  LIB     $t: $(basename "$a"): ${top:-<no frame>}"
    fi
  done
  if [ "$t" = trace ]; then
    n=0
    for c in "$cont"/contained-*.h5; do
      out=$(KVSIM_FUZZ_NO_PROBE=1 timeout 60 "$fz" -timeout=20 "$c" 2>&1); rc=$?
      top=$(printf '%s\n' "$out" | top_frame)
      if printf '%s\n' "$top" | is_ours; then
        ours=$((ours+1)); echo "  OURS    trace (without the probe): $(basename "$c"): $top"
        continue
      fi
      out=$(timeout 120 "$fz" -timeout=60 "$c" 2>&1); rc=$?
      if [ $rc -ne 0 ]; then
        lib=$((lib+1)); echo "  LIB     trace: $(basename "$c") crashes the target even WITH the probe: $(printf '%s\n' "$out" | top_frame)"
        continue
      fi
      contained=$((contained+1)); n=$((n+1))
      [ $n -gt 12 ] && continue     # every command on a sample of them
      for cmd in "trace info" "trace validate" "trace cut" eval; do
        case $cmd in
          "trace cut") timeout 120 "$k" trace cut "$c" -o "$KVSIM_FUZZ_TMP/cut.h5" >"$KVSIM_FUZZ_TMP/o" 2>&1; r=$? ;;
          eval) timeout 120 "$k" eval --trace "$c" --method full --db "$KVSIM_FUZZ_TMP/e.db" --quiet --no-progress >"$KVSIM_FUZZ_TMP/o" 2>&1; r=$? ;;
          *) timeout 120 "$k" $cmd "$c" >"$KVSIM_FUZZ_TMP/o" 2>&1; r=$? ;;
        esac
        rm -f "$KVSIM_FUZZ_TMP/cut.h5" "$KVSIM_FUZZ_TMP"/e.db*
        if [ $r -eq 0 ] || [ $r -ge 124 ] || ! grep -q -F "$(basename "$c")" "$KVSIM_FUZZ_TMP/o"; then
          cmdfail=$((cmdfail+1)); echo "  COMMAND kvsim $cmd $(basename "$c"): exit $r: $(head -c 200 "$KVSIM_FUZZ_TMP/o")"
        fi
      done
    done
  fi
  echo "fuzz_$t: ${secs}s, $execs executions, corpus $(ls "$corpus" | wc -l); findings: $ours ours, $lib in a library" \
       "$([ "$t" = trace ] && echo ", $contained HDF5 crashes/hangs contained by the probe, $cmdfail command failures on them")"
  total_ours=$((total_ours+ours)); total_lib=$((total_lib+lib))
  total_contained=$((total_contained+contained)); total_cmdfail=$((total_cmdfail+cmdfail))
done
echo "fuzz: $total_ours findings in kvsim's code, $total_lib crashes inside libraries reaching kvsim," \
     "$total_contained contained HDF5 findings, $total_cmdfail command failures"
[ $total_ours -eq 0 ] && [ $total_lib -eq 0 ] && [ $total_cmdfail -eq 0 ]
