#!/usr/bin/python3
"""fit_e2e.py — fit keys of kvsim's graph-mode step model by coordinate
descent on a mean squared relative error, in two modes:

  --parts COMPBENCH.csv: the rows of `kvsim-gpu compbench` (kvsim-gpu-host
      predict-parts), the kinds named by --fit (default all of them:
      topk,quest,completion,attn_sel,attn_full,small5): the selection,
      estimate, attention-pair and small-kernel keys are fitted to these
      measurements of each part alone in a CUDA graph, not to steps.  Fit
      one group at a time (--fit topk,quest | completion | attn_sel,attn_full
      | small5): the groups share no key.
  steps (E2E.csv): the training quarter of the e2e rows (kvsim-gpu-host
      predict-e2e's rule: every 4th step row in file order); held-out rows
      play no part in the fit.  No key is fitted to steps by default now
      (every figure of the step is measured alone); --keys names any to
      fit, e.g. to test whether the steps ask for a different value.

usage: scripts/fit_e2e.py KVSIM_GPU_HOST --parts COMPBENCH.csv [--fit KINDS] [--hw CFG] [--keys ...]
       scripts/fit_e2e.py KVSIM_GPU_HOST E2E.csv --keys k1,k2,... [--hw CFG]
Starts from START below (the other keys at the config's values).
Prints the fitted values (as --set arguments) and the summary with them.
Exit 1 with a message when kvsim-gpu-host fails."""
import os, subprocess, sys

START = {"gpu.graph_kernel_ns": 2750.0, "gpu.graph_kernel_hidden_ns": 0.5, "gpu.select_node_ns": 2500.0,
         "gpu.select_key_ns": 0.3, "gpu.select_key_dg_ns": 0.0002, "gpu.select_page_ns": 0.3,
         "gpu.select_page_dg_ns": 0.0005, "gpu.graph_estimate_fixed_ns": 2000.0,
         "gpu.graph_estimate_dim_ns": 100.0, "gpu.graph_estimate_flops_per_s": 1e13,
         "gpu.graph_attn_fixed_ns": 7500.0, "gpu.graph_attn_bw_efficiency": 1.0,
         "gpu.graph_attn_ramp_ns": 5000.0, "gpu.graph_attn_ramp_bytes": 3e7}
STEP_KEYS = []
PART_KEYS = {"topk": ["gpu.select_node_ns", "gpu.select_key_ns", "gpu.select_key_dg_ns"],
             "quest": ["gpu.select_node_ns", "gpu.select_page_ns", "gpu.select_page_dg_ns"],
             "completion": ["gpu.graph_estimate_fixed_ns", "gpu.graph_estimate_dim_ns",
                            "gpu.graph_estimate_flops_per_s"],
             "attn_sel": ["gpu.graph_attn_fixed_ns", "gpu.graph_attn_bw_efficiency", "gpu.graph_attn_ramp_ns",
                          "gpu.graph_attn_ramp_bytes"],
             "attn_full": ["gpu.graph_attn_fixed_ns", "gpu.graph_attn_bw_efficiency", "gpu.graph_attn_ramp_ns",
                           "gpu.graph_attn_ramp_bytes"],
             "small5": ["gpu.graph_kernel_ns", "gpu.graph_kernel_hidden_ns"]}


def main():
    a = sys.argv[1:]
    if len(a) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    exe = a.pop(0)
    hw, keys, parts, fit, data = "sim/hw/h200_pcie5.cfg", None, None, \
        "topk,quest,completion,attn_sel,attn_full,small5", None
    while a:
        if a[0] == "--hw" and len(a) > 1: hw = a[1]; a = a[2:]
        elif a[0] == "--keys" and len(a) > 1: keys = a[1].split(","); a = a[2:]
        elif a[0] == "--parts" and len(a) > 1: parts = a[1]; a = a[2:]
        elif a[0] == "--fit" and len(a) > 1: fit = a[1]; a = a[2:]
        elif not a[0].startswith("--") and data is None: data = a[0]; a = a[1:]
        else:
            print("fit_e2e.py: unknown argument %r" % a[0], file=sys.stderr)
            return 2
    if (parts is None) == (data is None):
        print("fit_e2e.py: give either E2E.csv or --parts COMPBENCH.csv", file=sys.stderr)
        return 2
    if keys is None:
        keys = STEP_KEYS if parts is None else sorted({k for f in fit.split(",") for k in PART_KEYS.get(f, [])})
    if not keys:
        print("fit_e2e.py: no key to fit (steps: name them with --keys)", file=sys.stderr)
        return 2
    for k in keys:
        if k not in START:
            print("fit_e2e.py: %s is not a fitted key (%s)" % (k, ", ".join(START)), file=sys.stderr)
            return 2
    p = {k: START[k] for k in keys}
    out = "/tmp/fit_e2e_%d.csv" % os.getpid()
    env = dict(os.environ, KVSIM_FIT_TRACE="1")

    def run(p):
        sets = dict(p)
        if parts is None: cmd = [exe, "predict-e2e", data, out, "--hw", hw]
        else: cmd = [exe, "predict-parts", parts, out, "--hw", hw, "--fit", fit]
        for k, v in sets.items(): cmd += ["--set", "%s=%.8g" % (k, v)]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode:
            sys.exit("fit_e2e.py: %s failed: %s" % (" ".join(cmd), r.stderr.strip()))
        lines = r.stdout.splitlines()
        mse = float([l for l in lines if l.startswith("train_mse")][0].split()[1])
        summ = "\n".join(l for l in lines if l.startswith("predict-"))
        return mse, summ

    best, summ = run(p)
    step = {k: 0.5 for k in p}
    for _ in range(400):
        improved = False
        for k in p:
            for f in (1 + step[k], 1 / (1 + step[k])):
                q = dict(p); q[k] = p[k] * f
                m, s = run(q)
                if m < best - 1e-9:
                    best, summ, p, improved = m, s, q, True
                    break
            else:
                step[k] = max(step[k] / 2, 0.002)
        if not improved and all(s <= 0.002 for s in step.values()):
            break
    os.unlink(out)
    print(" ".join("--set %s=%.4g" % kv for kv in p.items()))
    print("fitted mse %.3f (%%^2)\n%s" % (best, summ))
    return 0

if __name__ == "__main__":
    sys.exit(main())
