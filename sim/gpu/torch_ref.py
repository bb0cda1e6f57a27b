#!/usr/bin/env python3
"""torch_ref.py — PyTorch reference timings for `kvsim-gpu attnbench` and `e2e`,
run on the same GPU in the same device call (scripts/gpu_fidelity.sh).

  torch_ref.py attn OUT.csv   scaled_dot_product_attention(enable_gqa=True),
                              flash backend when it accepts the call, at the
                              attnbench shapes (fp16 KV, one decode query)
  torch_ref.py e2e OUT.csv    one decode step of a Llama-shaped model (random
                              bf16 weights, F.linear GEMVs, RMSNorm, RoPE,
                              SwiGLU, LM head, SDPA enable_gqa) captured in one
                              CUDA graph, batch 1, KV in HBM, contexts
                              8k/32k/128k, the three presets of issue 12's table

Timing: CUDA events around repeated calls (attn: 20 calls per sample on
rotating copies of >= 512 MiB, median of 5 samples; e2e: graph replays,
median of 15).  Needs torch >= 2.5 (enable_gqa) and a CUDA GPU; exit 77 otherwise.
"""
import math
import sys


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("attn", "e2e"):
        print(__doc__)
        return 2
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"SKIP torch_ref: no torch ({e})")
        return 77
    if not torch.cuda.is_available():
        print("SKIP torch_ref: no CUDA GPU")
        return 77
    out = open(sys.argv[2], "w")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    try:
        from torch.nn.attention import sdpa_kernel, SDPBackend
    except ImportError:
        sdpa_kernel = None

    def sdpa(q, k, v, backend_box):
        if sdpa_kernel is not None and backend_box[0] in (None, "flash"):
            try:
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    r = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                backend_box[0] = "flash"
                return r
            except RuntimeError:
                backend_box[0] = "default"
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

    if sys.argv[1] == "attn":
        shapes = [("llama-3.2-1b", 8, 4, 64), ("llama-3.2-3b", 8, 3, 128), ("llama-3.1-8b", 8, 4, 128),
                  ("llama-3.1-70b/tp8", 1, 8, 128)]
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
        for model, hkv, G, d in shapes:
            for ctx in (8192, 32768, 131072):
                for batch in (1, 4, 16):
                    by = batch * hkv * ctx * d * 2 * 2
                    ncopy = max(1, (1 << 29) // by + 1)
                    ks = [torch.randn(batch, hkv, ctx, d, device=dev, dtype=torch.float16) for _ in range(ncopy)]
                    vs = [torch.randn(batch, hkv, ctx, d, device=dev, dtype=torch.float16) for _ in range(ncopy)]
                    q = torch.randn(batch, hkv * G, 1, d, device=dev, dtype=torch.float16)
                    box = [None]
                    for i in range(3):
                        sdpa(q, ks[i % ncopy], vs[i % ncopy], box)
                    torch.cuda.synchronize()
                    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    ts = []
                    for r in range(7):
                        e0.record()
                        for i in range(20):
                            sdpa(q, ks[(r * 20 + i) % ncopy], vs[(r * 20 + i) % ncopy], box)
                        e1.record()
                        torch.cuda.synchronize()
                        if r >= 2:
                            ts.append(e0.elapsed_time(e1) * 1e3 / 20)
                    us = sorted(ts)[len(ts) // 2]
                    print(f"attn {model:18s} ctx {ctx:6d} batch {batch:2d}: {us:9.1f} us "
                          f"{by / us / 1e3:7.0f} GB/s ({box[0]})")
                    out.write(f"attn,{model},{ctx},{batch},{us:.2f},{box[0]}\n")
                    del ks, vs
                    torch.cuda.empty_cache()
        return 0

    # ---- e2e: one graph-captured decode step ----
    geos = {"llama-3.2-1b": (16, 32, 8, 64, 2048, 8192, 128256),
            "llama-3.2-3b": (28, 24, 8, 128, 3072, 8192, 128256),
            "llama-3.1-8b": (32, 32, 8, 128, 4096, 14336, 128256)}
    bf = torch.bfloat16
    for model, (L, H, Hkv, d, hid, ffn, vocab) in geos.items():
        W = []
        for l in range(L):
            W.append(dict(qkv=torch.randn((H + 2 * Hkv) * d, hid, device=dev, dtype=bf) * 0.02,
                          o=torch.randn(hid, H * d, device=dev, dtype=bf) * 0.02,
                          gu=torch.randn(2 * ffn, hid, device=dev, dtype=bf) * 0.02,
                          dn=torch.randn(hid, ffn, device=dev, dtype=bf) * 0.02,
                          n1=torch.ones(hid, device=dev, dtype=bf), n2=torch.ones(hid, device=dev, dtype=bf)))
        lm = torch.randn(vocab, hid, device=dev, dtype=bf) * 0.02
        nf = torch.ones(hid, device=dev, dtype=bf)
        for ctx in (8192, 32768, 131072):
            B = 1
            kvbytes = L * B * Hkv * (ctx + 1) * d * 2 * 2
            nbuf = L if kvbytes < 60e9 else max(2, int(60e9 // (kvbytes / L)))
            Kc = [torch.randn(B, Hkv, ctx + 1, d, device=dev, dtype=bf) for _ in range(nbuf)]
            Vc = [torch.randn(B, Hkv, ctx + 1, d, device=dev, dtype=bf) for _ in range(nbuf)]
            x0 = torch.randn(B, hid, device=dev, dtype=bf)
            pos = ctx
            inv = 500000.0 ** (-torch.arange(0, d // 2, device=dev, dtype=torch.float32) * 2 / d)
            cos, sin = torch.cos(pos * inv).to(bf), torch.sin(pos * inv).to(bf)
            box = [None]

            def rms(x, w):
                xf = x.float()
                return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(bf) * w

            def rope(t):
                a, b = t[..., : d // 2], t[..., d // 2:]
                return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)

            def step(x):
                for l in range(L):
                    w = W[l]
                    qkv = F.linear(rms(x, w["n1"]), w["qkv"])
                    q = rope(qkv[:, : H * d].view(B, H, 1, d))
                    k = rope(qkv[:, H * d:(H + Hkv) * d].view(B, Hkv, 1, d))
                    v = qkv[:, (H + Hkv) * d:].view(B, Hkv, 1, d)
                    Kc[l % nbuf][:, :, pos:pos + 1].copy_(k)
                    Vc[l % nbuf][:, :, pos:pos + 1].copy_(v)
                    o = sdpa(q, Kc[l % nbuf], Vc[l % nbuf], box)
                    x = x + F.linear(o.reshape(B, H * d), w["o"])
                    gu = F.linear(rms(x, w["n2"]), w["gu"])
                    x = x + F.linear(F.silu(gu[:, :ffn]) * gu[:, ffn:], w["dn"])
                return F.linear(rms(x, nf), lm)

            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(2):
                    step(x0)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                y = step(x0)
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            ts = []
            for r in range(18):
                e0.record()
                g.replay()
                e1.record()
                torch.cuda.synchronize()
                if r >= 3:
                    ts.append(e0.elapsed_time(e1) * 1e3)
            us = sorted(ts)[len(ts) // 2]
            ok = bool(torch.isfinite(y).all())
            print(f"torch e2e {model:13s} ctx {ctx:6d} B 1 full hbm: {us:9.1f} us ({box[0]}, kv buffers {nbuf})"
                  f"{'' if ok else ' NON-FINITE'}")
            out.write(f"torch_e2e,{model},{ctx},1,full,hbm,{us:.2f},{box[0]},{nbuf}\n")
            out.flush()
            del g, Kc, Vc, y
            torch.cuda.empty_cache()
        del W, lm
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
