#!/usr/bin/python3
"""Tests of scripts/capture_trace.py on Hugging Face transformers models.

Builds small randomly initialised Llama, Qwen2 and Mistral models (2 layers,
hidden 128, 4 heads, 2 KV heads; no download, no weights), saves them to a
scratch folder, captures a trace with the command-line script (float32, on
CUDA when available) from a token-id file, and checks:
  * `nll=` equals the NLL of the decode tokens computed here from the model's
    own logits (float64);
  * the file's shapes, attributes (rope_style "half", rope_theta);
  * k equals RoPE(k_proj(x)) recomputed here from the k_proj output with the
    rope_theta / rope_style written in the file (so a reader can undo it);
  * softmax(scale q k^T) v recomputed in float64 from the captured tensors
    reproduces each layer's attention output as the model computes it (a
    forward pre-hook on o_proj), max rel L2 <= 1e-4;
  * `kvsim trace validate --check-ref` accepts the file (when KVSIM_BIN is set).
If `tokenizers` is importable and the pysrc-llama-12m tokenizer.json is found
(KVSIM_SHARED, or tests/data/pysrc_tokenizer.json), the script's own byte-level
BPE encoder is also compared with the `tokenizers` library on standard-library
sources.

Skips (exit 77) where transformers is not importable (Debian's /usr/bin/python3
on the build machine and in CI).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("KVSIM_SRC", os.path.dirname(HERE))
SCRIPT = os.path.join(SRC, "scripts", "capture_trace.py")
SHARED = os.environ.get("KVSIM_SHARED", os.path.join(SRC, "..", "shared"))
KVSIM_BIN = os.environ.get("KVSIM_BIN")

failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)


def rel_l2_rows(a, b):
    import numpy as np
    num = np.linalg.norm(a - b, axis=-1)
    den = np.maximum(np.linalg.norm(b, axis=-1), 1e-30)
    return float((num / den).max())


def attention_from_file(g, T0, scale):
    import numpy as np
    q = g["q"][...].astype(np.float64)
    k = g["k"][...].astype(np.float64)
    v = g["v"][...].astype(np.float64)
    S, H, d = q.shape
    group = H // k.shape[0]
    out = np.empty((S, H, d))
    for s in range(S):
        p = T0 + s
        for h in range(H):
            z = scale * (k[h // group, :p + 1] @ q[s, h])
            z = np.exp(z - z.max())
            out[s, h] = (z / z.sum()) @ v[h // group, :p + 1]
    return out


def rope_half(x, theta):
    """x [heads, T, d] float64 numpy: HF-style rotation of pairs (i, i + d/2)."""
    import numpy as np
    H, T, d = x.shape
    inv = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, axis=1)
    sin = np.concatenate([np.sin(ang)] * 2, axis=1)
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], axis=-1)
    return x * cos + rot * sin


def one_model(name, cfg_cls, extra, device, tmp):
    import h5py
    import numpy as np
    import torch
    import transformers
    torch.manual_seed(1234)
    cfg = cfg_cls(vocab_size=1000, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                  rope_theta=10000.0, **extra)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    # random init gives near-uniform attention: scale q/k up so the heads are peaked
    with torch.no_grad():
        for L in model.model.layers:
            L.self_attn.q_proj.weight.mul_(4.0)
            L.self_attn.k_proj.weight.mul_(4.0)
    mdir = os.path.join(tmp, name)
    model.save_pretrained(mdir)
    N, S = 300, 24
    rng = np.random.default_rng(7)
    toks = rng.integers(1, 1000, size=N + S + 5)
    tfile = os.path.join(tmp, name + "_tokens.txt")
    with open(tfile, "w") as fh:
        fh.write(" ".join(map(str, toks)))
    out = os.path.join(tmp, name + ".h5")
    p = subprocess.run([sys.executable, SCRIPT, "--model", mdir, "--tokens", tfile, "--offset", "5",
                        "--prefill", str(N), "--decode", str(S), "--dtype", "float32",
                        "--device", device, "-o", out], capture_output=True, text=True)
    check(p.returncode == 0, "%s: capture on %s rc %d %s" % (
        name, device, p.returncode, p.stderr.strip()[-500:] if p.returncode else ""))
    if p.returncode != 0:
        return
    m = re.search(r"^nll=([0-9.eE+-]+)$", p.stdout, re.M)
    nll = float(m.group(1)) if m else float("nan")

    # the model's own forward (float32, same device), with hooks
    model = transformers.AutoModelForCausalLM.from_pretrained(mdir)
    model.to(device=device, dtype=torch.float32).eval()
    attn_in, kproj = {}, {}
    hooks = []
    for l, L in enumerate(model.model.layers):
        hooks.append(L.self_attn.o_proj.register_forward_pre_hook(
            lambda mod, args, l=l: attn_in.__setitem__(l, args[0][0].double().cpu().numpy())))
        hooks.append(L.self_attn.k_proj.register_forward_hook(
            lambda mod, args, out, l=l: kproj.__setitem__(l, out[0].double().cpu().numpy())))
    ids = torch.tensor([toks[5:5 + N + S].tolist()], device=device)
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits[0].double()
    for h in hooks:
        h.remove()
    lp = torch.log_softmax(logits[N - 1:N + S - 1], dim=-1)
    want = float(-lp.gather(1, ids[0, N:, None])[:, 0].mean())
    check(abs(nll - want) < 1e-5, "%s: nll=%.6f = model's decode NLL %.6f" % (name, nll, want))

    with h5py.File(out, "r") as f:
        a = f.attrs
        d = int(a["head_dim"])
        check((int(a["n_layers"]), int(a["n_heads"]), int(a["n_kv_heads"]), d, int(a["prefill_len"]),
               int(a["n_decode"])) == (2, 4, 2, 32, N, S) and a["rope"] == "applied"
              and a["rope_style"] == "half" and abs(float(a["softmax_scale"]) - d ** -0.5) < 1e-12,
              "%s: root attributes" % name)
        check(list(f["tokens"][...]) == toks[5:5 + N + S].tolist(), "%s: tokens" % name)
        worst_k, worst_o, worst_ref = 0.0, 0.0, 0.0
        for l in range(2):
            g = f["layer_%03d" % l]
            ok = g["k"].shape == (2, N + S, d) and g["v"].shape == (2, N + S, d) and \
                g["q"].shape == (S, 4, d) and g["o_ref"].shape == (S, 4, d) and \
                g["k"].chunks == (1, N + S, d)
            check(ok, "%s layer %d: shapes and chunks" % (name, l))
            kpre = kproj[l].reshape(N + S, 2, d).transpose(1, 0, 2)
            worst_k = max(worst_k, rel_l2_rows(g["k"][...].astype(np.float64),
                                               rope_half(kpre, float(a["rope_theta"]))))
            inner = attn_in[l][N:].reshape(S, 4, d)
            mine = attention_from_file(g, N, float(a["softmax_scale"]))
            e = rel_l2_rows(mine, inner)
            e2 = rel_l2_rows(g["o_ref"][...].astype(np.float64), inner)
            print("      %s layer %d: rel L2 vs attention output before o_proj: %.2e (o_ref %.2e)"
                  % (name, l, e, e2))
            worst_o, worst_ref = max(worst_o, e), max(worst_ref, e2)
        check(worst_k < 1e-5, "%s: k = RoPE_half(k_proj x, theta from file): max rel L2 %.2e"
              % (name, worst_k))
        check(worst_o <= 1e-4, "%s: attention from captured q,k,v reproduces the model's "
              "(%s): max rel L2 %.2e <= 1e-4" % (name, device, worst_o))
        check(worst_ref <= 1e-4, "%s: o_ref vs model attention: max rel L2 %.2e" % (name, worst_ref))
    if KVSIM_BIN and os.path.exists(KVSIM_BIN):
        p = subprocess.run([KVSIM_BIN, "trace", "validate", "--check-ref", out],
                           capture_output=True, text=True)
        check(p.returncode == 0, "%s: kvsim trace validate --check-ref: %s"
              % (name, (p.stdout + p.stderr).strip().splitlines()[-1]))


def compare_tokenizers():
    try:
        import tokenizers
    except ImportError:
        print("skip  tokenizer comparison: no `tokenizers` package")
        return
    cands = [os.path.join(SHARED, "models", "pysrc-llama-12m", "tokenizer.json"),
             os.path.join(HERE, "data", "pysrc_tokenizer.json")]
    path = next((c for c in cands if os.path.isfile(c)), None)
    if path is None:
        print("skip  tokenizer comparison: no pysrc-llama-12m tokenizer.json")
        return
    sys.path.insert(0, os.path.dirname(SCRIPT))
    import capture_trace as ct
    mine = ct.ByteLevelBPE(path)
    ref = tokenizers.Tokenizer.from_file(path)
    files = sorted(glob.glob(os.path.join(os.path.dirname(json.__file__), "..", "*.py")))[:40]
    extra = "d = {'\u00e9t\u00e9': 1}  # \u65e5\u672c\u8a9e \U0001F600 x\u00a0y\u2003z\r\n\t \t<|eot|>it's"
    texts = [open(f, encoding="utf-8", errors="replace").read() for f in files] + [extra]
    bad, total = 0, 0
    for t in texts:
        a = mine.encode(t)
        b = ref.encode(t, add_special_tokens=False).ids
        total += len(b)
        if a != b:
            bad += 1
            i = next((j for j in range(min(len(a), len(b))) if a[j] != b[j]), min(len(a), len(b)))
            print("      differs at token %d: mine %s ref %s" % (i, a[i:i + 5], b[i:i + 5]))
    check(bad == 0, "byte-level BPE encoder = tokenizers %s on %d texts (%d tokens)"
          % (tokenizers.__version__, len(texts), total))


def main():
    try:
        import transformers  # first: where it is missing, skip without importing torch
        import h5py  # noqa: F401
        import numpy  # noqa: F401
        import torch
    except ImportError as e:
        print("SKIP test_capture_hf: %s (needs transformers, torch, h5py, numpy)" % e)
        return SKIP
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print("torch %s, transformers %s, device %s%s" % (
        torch.__version__, transformers.__version__, device,
        " (%s)" % torch.cuda.get_device_name(0) if device == "cuda" else ""))
    base = os.environ.get("KVSIM_TMP") or tempfile.gettempdir()
    tmp = tempfile.mkdtemp(prefix="capture-hf-", dir=base)
    try:
        compare_tokenizers()
        one_model("llama", transformers.LlamaConfig, {}, device, tmp)
        one_model("qwen2", transformers.Qwen2Config, {}, device, tmp)
        one_model("mistral", transformers.MistralConfig, {"sliding_window": 4096}, device, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("%d FAILED:\n  %s" % (len(failures), "\n  ".join(failures)))
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
