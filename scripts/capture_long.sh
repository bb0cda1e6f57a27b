#!/bin/sh
# capture_long.sh — capture-on-demand of long real traces, with a cache.
#
# Builds a deterministic text from a Python package's sources (the .py files
# under /usr/lib/python3/dist-packages/PKG, tests excluded, in C-locale sorted
# order, each preceded by a "# file: RELPATH" line, whole files until about
# 8 bytes per token of the window), runs
# scripts/capture_trace.py on it with the 64k-context model, and keeps the
# trace in a cache folder so that later calls return at once.  Prints the
# trace's path on stdout (last line); progress goes to stderr.
#
# usage: scripts/capture_long.sh [--context N] [--decode S] [--package PKG]
#                                [--model DIR] [--offset K] [--dtype float16|float32]
#   --context N   prefill tokens T0 (default 32768)
#   --decode S    decode steps (default 128)
#   --package PKG source package under /usr/lib/python3/dist-packages (default numpy)
#   --model DIR   model folder (default ../shared/models/pysrc-llama-64k next to the repo)
# Cache folder: $KVSIM_TRACE_CACHE, else ~/.cache/kvsim/traces.  The cache key
# is the model folder's name, the package, its file list's hash, N, S, offset
# and dtype; a half-written capture never lands in the cache (written to a
# temporary name, renamed when capture_trace.py succeeded).
# Needs Debian's /usr/bin/python3 (torch, h5py, numpy).  The forward pass is
# exact causal attention, O(N^2): a 32k capture takes about 5 minutes on 2
# idle cores (far longer on a loaded machine); it runs under `nice`.
# Errors: a one-line message naming the missing file / bad option, exit 1.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
ctx=32768
dec=128
pkg=numpy
off=0
dtype=float16
model="$repo/../shared/models/pysrc-llama-64k"

die() { echo "capture_long.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --context) [ $# -ge 2 ] || die "--context needs a value"; ctx=$2; shift 2 ;;
        --decode) [ $# -ge 2 ] || die "--decode needs a value"; dec=$2; shift 2 ;;
        --package) [ $# -ge 2 ] || die "--package needs a value"; pkg=$2; shift 2 ;;
        --model) [ $# -ge 2 ] || die "--model needs a value"; model=$2; shift 2 ;;
        --offset) [ $# -ge 2 ] || die "--offset needs a value"; off=$2; shift 2 ;;
        --dtype) [ $# -ge 2 ] || die "--dtype needs a value"; dtype=$2; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
case "$ctx" in ''|*[!0-9]*) die "--context '$ctx' is not a positive integer" ;; esac
case "$dec" in ''|*[!0-9]*) die "--decode '$dec' is not a positive integer" ;; esac
case "$off" in ''|*[!0-9]*) die "--offset '$off' is not a non-negative integer" ;; esac
[ "$ctx" -gt 0 ] && [ "$dec" -gt 0 ] || die "--context and --decode must be > 0"
case "$dtype" in float16|float32) ;; *) die "--dtype '$dtype' must be float16 or float32" ;; esac
[ -f "$model/model_config.json" ] || die "$model: no model_config.json (is ../shared present?)"
src="/usr/lib/python3/dist-packages/$pkg"
[ -d "$src" ] || die "$src: no such package folder"
py=/usr/bin/python3
[ -x "$py" ] || die "$py not found (Debian python3 with torch/h5py/numpy is needed)"

cache=${KVSIM_TRACE_CACHE:-${HOME:-/tmp}/.cache/kvsim/traces}
mkdir -p "$cache" || die "$cache: cannot create the cache folder"

list=$(cd "$src" && find . -name '*.py' -type f ! -path '*/tests/*' | LC_ALL=C sort)
[ -n "$list" ] || die "$src: no .py files"
lhash=$(printf '%s\n' "$list" | cksum | cut -d' ' -f1)
name="$(basename "$model")_${pkg}_${lhash}_T${ctx}_S${dec}_o${off}_${dtype}.h5"
out="$cache/$name"
if [ -f "$out" ]; then
    echo "capture_long.sh: cached: $out" >&2
    echo "$out"
    exit 0
fi

tmpd=$(mktemp -d "${TMPDIR:-/tmp}/capture_long.XXXXXX")
trap 'rm -rf "$tmpd"; rm -f "$out.part.$$"' EXIT INT TERM
txt="$tmpd/text.py"
# Only as many whole files as the window needs (about 8 bytes per token of
# Python source, 2x margin): the tokenizer is pure Python, and tokenising a
# whole package takes longer than the forward pass.
need=$(( (ctx + dec + off) * 8 ))
printf '%s\n' "$list" | while IFS= read -r f; do
    [ -f "$txt" ] && [ "$(wc -c < "$txt")" -ge "$need" ] && break
    { printf '# file: %s/%s\n' "$pkg" "${f#./}"; cat "$src/$f"; printf '\n'; } >> "$txt"
done
[ "$(wc -c < "$txt")" -ge "$need" ] || echo "capture_long.sh: $pkg has only $(wc -c < "$txt") bytes of sources (wanted $need); capturing anyway" >&2
echo "capture_long.sh: $(wc -c < "$txt") bytes of $pkg sources; capturing T0=$ctx S=$dec -> $out" >&2
nice -n 10 "$py" "$here/capture_trace.py" --model "$model" --text "$txt" --prefill "$ctx" \
    --decode "$dec" --offset "$off" --dtype "$dtype" -o "$out.part.$$" >&2 \
    || die "capture_trace.py failed (see above); nothing cached"
mv "$out.part.$$" "$out"
echo "$out"
