#!/usr/bin/env bash
# fuzz_trace.sh — kept for existing callers: fuzzes the trace target only.
#   scripts/fuzz_trace.sh [SECONDS]  ==  scripts/fuzz.sh SECONDS trace
# Exit 1 on a finding in kvsim's code, on a library crash that reaches the
# fuzz process (the probe failed to contain it), or when a kvsim command
# does not survive a contained HDF5 crasher; see scripts/fuzz.sh.
exec "$(dirname "$0")/fuzz.sh" "${1:-60}" trace
