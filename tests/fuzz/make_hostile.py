#!/usr/bin/python3
"""make_hostile.py OUTDIR — writes the small hostile (but HDF5-well-formed)
kvtrace files of tests/fuzz/corpus_hostile/ (each a few KB):

  claims_2e30.h5     geometry claims T0+S = 2^30 positions, k/v chunked, no
                     chunk ever written (issue 10 item 7: validate ran for hours)
  contig_2e30.h5     the same with contiguous k/v (allocation late: nothing stored)
  never_written.h5   a normal small geometry whose k/v/q were created but
                     never written (every read would return the fill value)
  partial.h5         k/v with only their first chunk written
  nan_k.h5           a valid trace except one NaN in layer 0, kv head 0, position 5 of k
  inf_q.h5           a valid trace except +Inf in q[step 1, head 1, i 0]

Needs h5py + numpy (Debian's /usr/bin/python3).  Deterministic."""
import sys, os
import numpy as np
import h5py

def root(f, L, H, KVH, d, T0, S):
    a = f.attrs
    a["kvtrace_version"] = np.int64(1)
    a["n_layers"] = np.int64(L); a["n_heads"] = np.int64(H); a["n_kv_heads"] = np.int64(KVH)
    a["head_dim"] = np.int64(d); a["prefill_len"] = np.int64(T0); a["n_decode"] = np.int64(S)
    a["softmax_scale"] = np.float64(1 / np.sqrt(d)); a["rope"] = "none"

def valid(path, mutate=None):
    L, H, KVH, d, T0, S = 1, 2, 1, 8, 14, 2
    T = T0 + S
    rng = np.random.default_rng(3)
    k = rng.standard_normal((KVH, T, d)).astype(np.float16)
    v = rng.standard_normal((KVH, T, d)).astype(np.float16)
    q = rng.standard_normal((S, H, d)).astype(np.float16)
    if mutate: mutate(k, v, q)
    with h5py.File(path, "w") as f:
        root(f, L, H, KVH, d, T0, S)
        g = f.create_group("layer_000")
        g.create_dataset("k", data=k, chunks=(1, T, d))
        g.create_dataset("v", data=v, chunks=(1, T, d))
        g.create_dataset("q", data=q)

def main(out):
    os.makedirs(out, exist_ok=True)
    big = 1 << 30
    with h5py.File(os.path.join(out, "claims_2e30.h5"), "w") as f:
        root(f, 1, 2, 1, 8, big - 1, 1)
        g = f.create_group("layer_000")
        for n in ("k", "v"):
            g.create_dataset(n, shape=(1, big, 8), dtype="<f2", chunks=(1, 1024, 8))
        g.create_dataset("q", data=np.ones((1, 2, 8), np.float16))
    with h5py.File(os.path.join(out, "contig_2e30.h5"), "w") as f:
        root(f, 1, 2, 1, 8, big - 1, 1)
        g = f.create_group("layer_000")
        for n in ("k", "v"):
            g.create_dataset(n, shape=(1, big, 8), dtype="<f2")
        g.create_dataset("q", data=np.ones((1, 2, 8), np.float16))
    with h5py.File(os.path.join(out, "never_written.h5"), "w") as f:
        root(f, 1, 2, 1, 8, 14, 2)
        g = f.create_group("layer_000")
        for n in ("k", "v"):
            g.create_dataset(n, shape=(1, 16, 8), dtype="<f2", chunks=(1, 16, 8))
        g.create_dataset("q", shape=(2, 2, 8), dtype="<f2", chunks=(2, 2, 8))
    with h5py.File(os.path.join(out, "partial.h5"), "w") as f:
        root(f, 1, 2, 1, 8, 62, 2)
        g = f.create_group("layer_000")
        for n in ("k", "v"):
            ds = g.create_dataset(n, shape=(1, 64, 8), dtype="<f2", chunks=(1, 16, 8))
            ds[0, 0:16, :] = np.ones((16, 8), np.float16)
        g.create_dataset("q", data=np.ones((2, 2, 8), np.float16))
    def nan_k(k, v, q): k[0, 5, 3] = np.nan
    def inf_q(k, v, q): q[1, 1, 0] = np.inf
    valid(os.path.join(out, "nan_k.h5"), nan_k)
    valid(os.path.join(out, "inf_q.h5"), inf_q)

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "corpus_hostile")
