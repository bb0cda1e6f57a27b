#!/usr/bin/python3
"""decode_study.py -- the closed-loop study of models/ACCURACY.md ("Closed loop"),
re-runnable: for every trace, `kvsim decode` (closed loop: the method in every
layer, teacher-forced over the trace's decode tokens) and `kvsim eval` (open
loop: the same settings, exact inputs) for each point of the study, then the
tables: per (trace, method, budget) dNLL +- s.e., KL, top-1, exact tokens,
read te, open-loop rel_l2; Spearman rank correlation of open-loop rel_l2 with
closed-loop dNLL and KL per method; the issue-14 goal at a 2 % read budget
(completion's dNLL <= half of Top-K's).

usage: scripts/decode_study.py --kvsim BIN --weights MODEL.h5 --db STUDY.db
                               [--fracs 0.01,0.02,0.04] [--steps a:b] [--window W]
                               [--maps fitted,taylor,favor] [--no-eval] [--table OUT.md]
                               TRACE.h5 ...

Points (read budgets are token-equivalents, METHODS.md section 8): full; topk
and completion (fitted map, oracle topk retriever; and the deployable
`--select clusters`) at every read-budget fraction; the other maps at 2 %;
quest at the same fractions as EXACT budgets (its page metadata does not fit
a 1-4 % read budget with 16-token pages).  Decode runs go to STUDY.db, eval
runs to STUDY_eval.db beside it.  A point already complete in the database
(same trace, kind and settings) is not run again, so an interrupted study
resumes.  All weights/trace mismatches and run failures are kvsim's own
one-line errors; the script stops at the first failure (exit 1).
Needs Debian's python3 (sqlite3 is in its standard library)."""
import argparse
import json
import math
import os
import sqlite3
import subprocess
import sys


def points(fracs, maps):
    p = [("full", "-", [])]
    for f in fracs:
        p.append(("topk", "read %g%%" % (100 * f), ["--method", "topk", "--read-budget-frac", str(f)]))
        p.append(("quest", "exact %g%%" % (100 * f), ["--method", "quest", "--budget-frac", str(f)]))
        p.append(("completion-fitted", "read %g%%" % (100 * f),
                  ["--method", "completion", "--feature-map", "fitted", "--select", "topk",
                   "--read-budget-frac", str(f)]))
        p.append(("completion-fitted+clusters", "read %g%%" % (100 * f),
                  ["--method", "completion", "--feature-map", "fitted", "--select", "clusters",
                   "--read-budget-frac", str(f)]))
    for m in maps:
        if m != "fitted" and 0.02 in fracs:
            p.append(("completion-" + m, "read 2%",
                      ["--method", "completion", "--feature-map", m, "--select", "topk", "--read-budget-frac", "0.02"]))
    for name, _, a in p:
        if name == "full":
            a[:] = ["--method", "full"]
    return p


def spec_key(args):
    """The settings that identify a point, from its command-line arguments."""
    return " ".join(args)


def done_runs(db, kind):
    """{(trace, key): run_id} of complete runs of this kind (key stored in our own table)."""
    if not os.path.exists(db):
        return {}
    with sqlite3.connect(db) as c:
        has = c.execute("SELECT 1 FROM sqlite_master WHERE name='decode_study_points'").fetchone()
        if not has:
            return {}
        rows = c.execute("SELECT p.trace, p.key, p.run_id FROM decode_study_points p JOIN runs r USING (run_id) "
                         "WHERE r.status = 'complete' AND p.kind = ?", (kind,)).fetchall()
    return {(t, k): r for t, k, r in rows}


def remember(db, kind, trace, key, run_id):
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE IF NOT EXISTS decode_study_points (kind TEXT, trace TEXT, key TEXT, run_id INTEGER)")
        c.execute("INSERT INTO decode_study_points VALUES (?, ?, ?, ?)", (kind, trace, key, run_id))


def last_run(db):
    with sqlite3.connect(db) as c:
        return c.execute("SELECT max(run_id) FROM runs").fetchone()[0]


def values(db, rid):
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT name, value FROM run_values WHERE run_id = ?", (rid,)).fetchall())


def spearman(x, y):
    def ranks(v):
        o = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(o):
            j = i
            while j + 1 < len(o) and v[o[j + 1]] == v[o[i]]:
                j += 1
            for k in range(i, j + 1):
                r[o[k]] = (i + j) / 2.0
            i = j + 1
        return r
    if len(x) < 3:
        return float("nan")
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--fracs", default="0.01,0.02,0.04")
    ap.add_argument("--maps", default="fitted,taylor,favor")
    ap.add_argument("--steps", default=None)
    ap.add_argument("--window", default=None)
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--table", default=None)
    ap.add_argument("traces", nargs="+")
    a = ap.parse_args()
    fracs = [float(x) for x in a.fracs.split(",")]
    for t in a.traces + [a.weights, a.kvsim]:
        if not os.path.exists(t):
            sys.exit("decode_study.py: %s: no such file" % t)
    edb = os.path.splitext(a.db)[0] + "_eval.db"
    common = []
    if a.steps:
        common += ["--steps", a.steps]
    if a.window:
        common += ["--window", a.window]
    pts = points(fracs, a.maps.split(","))
    rows = []
    for t in a.traces:
        tname = os.path.splitext(os.path.basename(t))[0]
        for name, budget, args in pts:
            key = spec_key(args + common)
            for kind, db, cmd in (("decode", a.db, [a.kvsim, "decode", "--weights", a.weights, "--trace", t]),
                                  ("eval", edb, [a.kvsim, "eval", "--trace", t])):
                if kind == "eval" and (a.no_eval or name == "full"):
                    continue
                done = done_runs(db, kind)
                if (t, key) in done:
                    continue
                full = cmd + args + common + ["--db", db, "--quiet", "--no-progress"]
                print("decode_study: %s %s %s" % (tname, kind, key), file=sys.stderr, flush=True)
                r = subprocess.run(full, capture_output=True, text=True)
                if r.returncode:
                    sys.exit("decode_study.py: %s failed (exit %d): %s" % (" ".join(full), r.returncode,
                                                                           r.stderr.strip()))
                remember(db, kind, t, key, last_run(db))
            dec = done_runs(a.db, "decode")[(t, key)]
            v = values(a.db, dec)
            with sqlite3.connect(a.db) as c:
                d = [x[0] for x in c.execute("SELECT nll - nll_full FROM decode_metrics WHERE run_id = ?", (dec,))]
            n = len(d)
            mean = sum(d) / n if n else float("nan")
            se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n) if n > 1 else float("nan")
            rel = float("nan")
            if not a.no_eval and name != "full":
                ev = done_runs(edb, "eval")[(t, key)]
                with sqlite3.connect(edb) as c:
                    rel = c.execute("SELECT avg(rel_l2) FROM head_metrics WHERE run_id = ?", (ev,)).fetchone()[0]
            rows.append(dict(trace=tname, method=name, budget=budget, dnll=mean, se=se, kl=v.get("kl_mean"),
                             top1=v.get("top1_agreement"), exact=v.get("mean_tokens_exact", float("nan")),
                             read=v.get("read_token_eq", float("nan")), rel=rel, nll_full=v.get("nll_full"),
                             nll_trace=v.get("nll_full_minus_trace")))
    out = []
    out.append("| trace | method | budget | closed-loop dNLL ± s.e. | KL | top-1 | exact tokens | read te | "
               "open-loop rel_l2 |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        out.append("| %s | %s | %s | %+.4f ± %.4f | %.4f | %.3f | %.1f | %.1f | %s |" % (
            r["trace"], r["method"], r["budget"], r["dnll"], r["se"], r["kl"], r["top1"], r["exact"], r["read"],
            "-" if math.isnan(r["rel"]) else "%.4f" % r["rel"]))
    out.append("")
    out.append("full attention vs the trace's nll_decode: " + ", ".join(
        "%s %.5f (%s)" % (r["trace"], r["nll_full"], "no nll_decode" if r["nll_trace"] is None else
                          "%+.5f" % r["nll_trace"]) for r in rows if r["method"] == "full"))
    if not a.no_eval:
        out.append("")
        out.append("| method | points | Spearman(rel_l2, dNLL) | Spearman(rel_l2, KL) |")
        out.append("|---|---|---|---|")
        meths = sorted({r["method"] for r in rows if r["method"] != "full"})
        for m in meths + ["all"]:
            s = [r for r in rows if r["method"] != "full" and (m == "all" or r["method"] == m)]
            out.append("| %s | %d | %.2f | %.2f |" % (m, len(s), spearman([r["rel"] for r in s], [r["dnll"] for r in s]),
                                                     spearman([r["rel"] for r in s], [r["kl"] for r in s])))
    if 0.02 in fracs:
        out.append("")
        out.append("| trace | topk dNLL (read 2%) | completion-fitted dNLL | ratio | clusters dNLL | goal (<= 0.5) |")
        out.append("|---|---|---|---|---|---|")
        for t in dict.fromkeys(r["trace"] for r in rows):
            g = {r["method"]: r for r in rows if r["trace"] == t and r["budget"] == "read 2%"}
            tk, cf, cl = g["topk"]["dnll"], g["completion-fitted"]["dnll"], g["completion-fitted+clusters"]["dnll"]
            ok = cf <= 0.5 * tk if tk > 0 else cf <= tk
            out.append("| %s | %+.4f | %+.4f | %.2f | %+.4f | %s |" % (t, tk, cf, cf / tk if tk else float("nan"), cl,
                                                                    "met" if ok else "NOT met"))
    text = "\n".join(out) + "\n"
    if a.table:
        with open(a.table, "w") as f:
            f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
