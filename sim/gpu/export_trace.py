#!/usr/bin/python3
"""export_trace.py — export a few layers of a kvtrace v1 file to raw binary
files for `kvsim-gpu check` (the device machine has no HDF5).

usage: export_trace.py TRACE.h5 OUTDIR LAYER [LAYER ...]

Writes OUTDIR/meta.txt (key value lines: trace, h, hkv, d, T0, S, scale,
then one `layer L` line per layer) and per layer L:
  L<L>_k.f16, L<L>_v.f16   float16 [hkv][T0+S][d] (the trace's own values)
  L<L>_q.f32               float32 [S][h][d]
  L<L>_oref.f32            float32 [S][h][d] (o_ref; zeros + `oref 0` if absent)
Files are written to a temporary name and renamed.  Exit 1 with a message
naming the file for a trace that breaks the format."""
import os
import sys

import h5py
import numpy as np


def fail(msg):
    print("export_trace: " + msg, file=sys.stderr)
    sys.exit(1)


def write(path, arr):
    tmp = path + ".tmp"
    arr.tofile(tmp)
    os.replace(tmp, path)


def main():
    if len(sys.argv) < 4:
        fail("usage: export_trace.py TRACE.h5 OUTDIR LAYER [LAYER ...]")
    trace, out, layers = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3:]]
    os.makedirs(out, exist_ok=True)
    try:
        f = h5py.File(trace, "r")
    except OSError as e:
        fail("%s: cannot open: %s" % (trace, e))
    a = f.attrs
    for key in ("kvtrace_version", "n_layers", "n_heads", "n_kv_heads", "head_dim", "prefill_len", "n_decode",
                "softmax_scale"):
        if key not in a:
            fail("%s: missing root attribute %s" % (trace, key))
    h, hkv, d = int(a["n_heads"]), int(a["n_kv_heads"]), int(a["head_dim"])
    T0, S = int(a["prefill_len"]), int(a["n_decode"])
    has_oref = True
    for L in layers:
        if L < 0 or L >= int(a["n_layers"]):
            fail("%s: layer %d out of range" % (trace, L))
        g = f["layer_%03d" % L]
        k = np.asarray(g["k"], dtype=np.float16)
        v = np.asarray(g["v"], dtype=np.float16)
        q = np.asarray(g["q"]).astype(np.float32)
        if k.shape != (hkv, T0 + S, d) or v.shape != k.shape or q.shape != (S, h, d):
            fail("%s: layer %d: k/v/q shapes %s %s %s do not match the attributes" % (trace, L, k.shape, v.shape,
                                                                                      q.shape))
        if "o_ref" in g:
            o = np.asarray(g["o_ref"], dtype=np.float32)
        else:
            o = np.zeros((S, h, d), np.float32)
            has_oref = False
        for name, arr in (("k.f16", k), ("v.f16", v), ("q.f32", q), ("oref.f32", o)):
            write(os.path.join(out, "L%d_%s" % (L, name)), np.ascontiguousarray(arr))
    meta = ["trace %s" % os.path.basename(trace), "h %d" % h, "hkv %d" % hkv, "d %d" % d, "T0 %d" % T0,
            "S %d" % S, "scale %.9g" % float(a["softmax_scale"]), "oref %d" % int(has_oref)]
    meta += ["layer %d" % L for L in layers]
    p = os.path.join(out, "meta.txt")
    with open(p + ".tmp", "w") as fh:
        fh.write("\n".join(meta) + "\n")
    os.replace(p + ".tmp", p)


if __name__ == "__main__":
    main()
