#!/usr/bin/env python3
"""kvsim serve --timeline: the file is valid JSON in the Chrome/Perfetto
trace-event format, and on every track (pid, tid) the complete ("X") events
nest or are disjoint (what Perfetto and chrome://tracing need to draw them)."""
import json, os, subprocess, sys, tempfile

def check_timeline(path):
    with open(path) as f:
        doc = json.load(f)                      # valid JSON or an exception
    ev = doc["traceEvents"]
    assert isinstance(ev, list) and ev, "no events"
    tracks = {}
    kinds = set()
    for e in ev:
        assert e["ph"] in ("X", "M", "C"), e
        kinds.add(e["ph"])
        if e["ph"] == "X":
            assert e["dur"] >= 0 and e["ts"] >= 0, e
            tracks.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"], e["name"]))
    assert {"X", "M", "C"} <= kinds, kinds
    eps = 1e-6   # microseconds: 1 ps, below the 1 ns resolution of the file
    for key, spans in tracks.items():
        # parents first: by start, then longest first
        spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
        stack = []
        for s in spans:
            while stack and stack[-1][1] <= s[0] + eps:
                stack.pop()
            if stack:
                assert s[1] <= stack[-1][1] + eps, f"track {key}: {s} overlaps {stack[-1]} without nesting"
            stack.append(s)
    return len(ev), len(tracks)

def main():
    kb, src = os.environ.get("KVSIM_BIN"), os.environ.get("KVSIM_SRC")
    if not kb or not src:
        print("KVSIM_BIN / KVSIM_SRC not set (run under ctest)")
        return 77
    tmp = os.environ.get("KVSIM_TMP") or tempfile.mkdtemp()
    out = os.path.join(tmp, "serve_tl")
    os.makedirs(out, exist_ok=True)
    db, tl = os.path.join(out, "t.db"), os.path.join(out, "t.json")
    for p in (db, tl):
        if os.path.exists(p):
            os.remove(p)
    # a small offloading workload: fetches on the host link, write-backs, SSD spill
    cmd = [kb, "serve", "--workload", os.path.join(src, "reports/workloads/example.cfg"),
           "--hw", os.path.join(src, "sim/hw/h200_pcie5.cfg"), "--model", "llama-3.1-8b",
           "--method", "topk", "--budget-frac", "0.04", "--db", db, "--timeline", tl, "--quiet",
           "--wset", "requests.count=24", "--wset", "requests.rate_per_s=50",
           "--set", "host.capacity_bytes=2e9", "--set", "gpu.hbm_capacity_bytes=40e9"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        return 1
    n, t = check_timeline(tl)
    with open(tl) as f:
        names = {e.get("name") for e in json.load(f)["traceEvents"]}
    # kernels (iterations), transfers per link, the SSD queue, per request
    for want in ("iteration (decode)", "fetch pages", "write-back (offload)", "ssd read", "copy (from SSD)",
                 "SSD reads outstanding", "queued", "prefill", "decode", "KV bytes"):
        if want not in names:
            print(f"timeline lacks '{want}' events")
            return 1
    print(f"timeline ok: {n} events on {t} tracks, nested")
    # a broken file must be caught by the checker (the test can fail)
    bad = os.path.join(out, "bad.json")
    with open(bad, "w") as f:
        json.dump({"traceEvents": [{"ph": "X", "pid": 1, "tid": 1, "name": "a", "ts": 0, "dur": 10},
                                   {"ph": "X", "pid": 1, "tid": 1, "name": "b", "ts": 5, "dur": 10},
                                   {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "x"}},
                                   {"ph": "C", "pid": 1, "name": "c", "ts": 0, "args": {"v": 1}}]}, f)
    try:
        check_timeline(bad)
        print("checker accepted overlapping spans")
        return 1
    except AssertionError:
        pass
    return 0

if __name__ == "__main__":
    sys.exit(main())
