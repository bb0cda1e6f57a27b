#!/usr/bin/python3
"""export_model.py -- write a language model's weights as one kvsim weights
file (HDF5, format in models/WEIGHTS.md) for `kvsim decode`.

Contract
  export_model.py --model PATH_OR_HF_NAME -o MODEL.h5

  Inputs: a folder of the project's model format (model_config.json +
  model_part*.pt, e.g. ../shared/models/pysrc-llama-12m; Debian's
  /usr/bin/python3 with torch 1.13 and h5py is enough), or a Hugging Face
  transformers model of the Llama family (Llama, Mistral, Qwen2: needs torch
  2 and transformers; biases of q/k/v are kept, rope scaling is resolved into
  the exported inverse frequencies).
  Output: every tensor as float32 (the forward pass of kvsim runs in float32),
  geometry, norm epsilon, RoPE style/theta/scaling and the softmax scale as
  root attributes, the rotary inverse frequencies as a float64 dataset.
  The file is written under a temporary name and renamed when complete.

Errors: one line `export_model: error: ...` on stderr, exit status 2, no
output file left behind.
"""

import argparse
import json
import math
import os
import re
import signal
import sys

FORMAT = "kvsim-weights"
VERSION = 1
CONTEXT_DEFAULT = 8192   # the project's format without "context" (as capture_trace.py)


class ExportError(Exception):
    pass


def _first_line(e):
    s = str(e)
    return s.splitlines()[0] if s else type(e).__name__


# ---------------------------------------------------------------------------
# The project's model format
# ---------------------------------------------------------------------------

def is_native_model(path):
    return (os.path.isdir(path) and os.path.isfile(os.path.join(path, "model_config.json"))
            and any(n.startswith("model_part") and n.endswith(".pt") for n in os.listdir(path)))


def load_native(path):
    """Returns (attrs, tensors) with tensors a dict name -> float32 numpy."""
    import numpy as np
    import torch
    try:
        with open(os.path.join(path, "model_config.json")) as fh:
            cfg = json.load(fh)
        vocab, d_model, L = int(cfg["vocab"]), int(cfg["d"]), int(cfg["layers"])
        H, KV, hd = int(cfg["heads"]), int(cfg["kv_heads"]), int(cfg["head_dim"])
        ffn, theta = int(cfg["ffn"]), float(cfg["theta"])
        context = int(cfg.get("context", CONTEXT_DEFAULT))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ExportError("%s/model_config.json: %s" % (path, _first_line(e)))
    if H < 1 or KV < 1 or H % KV or hd % 2 or L < 1:
        raise ExportError("%s/model_config.json: bad geometry (heads %d, kv_heads %d, head_dim %d, layers %d)"
                          % (path, H, KV, hd, L))
    sd = {}
    for p in sorted(n for n in os.listdir(path) if n.startswith("model_part") and n.endswith(".pt")):
        try:
            sd.update(torch.load(os.path.join(path, p), map_location="cpu"))
        except Exception as e:
            raise ExportError("cannot load %s/%s: %s" % (path, p, _first_line(e)))
    t = {}

    def take(src, dst, shape):
        if src not in sd:
            raise ExportError("%s: state dict lacks %s" % (path, src))
        a = sd[src].to(torch.float32).numpy()
        if tuple(a.shape) != tuple(shape):
            raise ExportError("%s: %s has shape %s, the config implies %s" % (path, src, tuple(a.shape), tuple(shape)))
        t[dst] = np.ascontiguousarray(a)

    take("emb.weight", "embed", (vocab, d_model))
    take("nf.weight", "norm_final", (d_model,))
    for l in range(L):
        p, o = "blocks.%d." % l, "layer_%03d/" % l
        take(p + "n1.weight", o + "attn_norm", (d_model,))
        take(p + "wq.weight", o + "wq", (H * hd, d_model))
        take(p + "wk.weight", o + "wk", (KV * hd, d_model))
        take(p + "wv.weight", o + "wv", (KV * hd, d_model))
        take(p + "wo.weight", o + "wo", (d_model, H * hd))
        take(p + "n2.weight", o + "ffn_norm", (d_model,))
        take(p + "w1.weight", o + "w_gate", (ffn, d_model))
        take(p + "w3.weight", o + "w_up", (ffn, d_model))
        take(p + "w2.weight", o + "w_down", (d_model, ffn))
    i = np.arange(0, hd, 2, dtype=np.float64)
    t["rope_inv_freq"] = theta ** (-i / hd)            # float64, as capture_trace.py computes it
    attrs = {"arch": "llama", "source_format": "kvsim-native", "model": os.path.basename(os.path.normpath(path)),
             "vocab_size": vocab, "d_model": d_model, "n_layers": L, "n_heads": H, "n_kv_heads": KV,
             "head_dim": hd, "ffn_hidden": ffn, "norm_eps": float(np.finfo(np.float32).eps),
             "rope_style": "interleaved", "rope_theta": theta, "rope_scaling": "none",
             "rope_attention_factor": 1.0, "rope_angle_precision": "float64",
             "softmax_scale": 1.0 / math.sqrt(hd), "tied_embeddings": 1, "qkv_bias": 0,
             "context": context}
    return attrs, t


# ---------------------------------------------------------------------------
# Hugging Face transformers, Llama family
# ---------------------------------------------------------------------------

SUPPORTED_HF = ("llama", "mistral", "qwen2")


def load_hf(name, model=None):
    """Returns (attrs, tensors).  `model` may be an already built
    transformers model (tests build small random ones)."""
    import numpy as np
    import torch
    try:
        import transformers
    except ImportError:
        raise ExportError("%s is not a kvsim model folder (model_config.json + model_part*.pt) and the "
                          "`transformers` package is not installed" % name)
    if model is None:
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(name)
        except Exception as e:
            raise ExportError("model %s: cannot load: %s" % (name, _first_line(e)))
    cfg = model.config
    mt = getattr(cfg, "model_type", "?")
    if mt not in SUPPORTED_HF:
        raise ExportError("model %s: model_type %r is not supported (%s)" % (name, mt, ", ".join(SUPPORTED_HF)))
    model = model.to(torch.float32).eval()
    base = model.base_model
    layers = base.layers
    L = len(layers)
    H = int(cfg.num_attention_heads)
    KV = int(getattr(cfg, "num_key_value_heads", None) or H)
    a0 = layers[0].self_attn
    hd = int(getattr(a0, "head_dim", None) or getattr(cfg, "head_dim", None) or cfg.hidden_size // H)
    D = int(cfg.hidden_size)
    ffn = int(cfg.intermediate_size)
    vocab = int(cfg.vocab_size)
    act = getattr(cfg, "hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise ExportError("model %s: hidden_act %r: only SwiGLU (silu) is supported" % (name, act))
    if hasattr(a0, "q_norm"):
        raise ExportError("model %s: per-head q/k norms (Qwen3-style) are not supported" % name)
    sw = getattr(cfg, "sliding_window", None)
    use_sw = bool(sw) and bool(getattr(cfg, "use_sliding_window", mt != "qwen2"))
    # rotary: the module's own inverse frequencies include linear / llama3 scaling
    rot = getattr(base, "rotary_emb", None) or getattr(a0, "rotary_emb", None)
    if rot is None or not hasattr(rot, "inv_freq"):
        raise ExportError("model %s: no rotary_emb.inv_freq found: unsupported" % name)
    rtype = getattr(rot, "rope_type", "default") or "default"
    if rtype not in ("default", "linear", "llama3", "yarn"):
        raise ExportError("model %s: rope type %r depends on the sequence length or is not supported "
                          "(default, linear, llama3, yarn)" % (name, rtype))
    inv = rot.inv_freq.detach().to(torch.float32).cpu().numpy().astype(np.float64)
    if inv.shape != (hd // 2,):
        raise ExportError("model %s: rotary inv_freq has %d entries, head_dim/2 = %d (partial rotary is "
                          "not supported)" % (name, inv.shape[0], hd // 2))
    att_factor = float(getattr(rot, "attention_scaling", 1.0) or 1.0)
    theta = getattr(cfg, "rope_theta", None)
    if theta is None:
        rp = getattr(cfg, "rope_parameters", None) or {}
        theta = rp.get("rope_theta") if isinstance(rp, dict) else None
    scaling = getattr(cfg, "rope_scaling", None)
    t = {}

    def put(dst, tensor, shape):
        a = tensor.detach().to(torch.float32).cpu().numpy()
        if tuple(a.shape) != tuple(shape):
            raise ExportError("model %s: %s has shape %s, expected %s" % (name, dst, tuple(a.shape), tuple(shape)))
        t[dst] = np.ascontiguousarray(a)

    put("embed", base.embed_tokens.weight, (vocab, D))
    put("norm_final", base.norm.weight, (D,))
    head = model.get_output_embeddings()
    tied = bool(getattr(cfg, "tie_word_embeddings", False)) or head.weight.data_ptr() == \
        base.embed_tokens.weight.data_ptr()
    if not tied:
        put("lm_head", head.weight, (vocab, D))
    if getattr(head, "bias", None) is not None:
        raise ExportError("model %s: an output head with a bias is not supported" % name)
    eps = None
    qkv_bias = 0
    for l, layer in enumerate(layers):
        o = "layer_%03d/" % l
        at, mlp = layer.self_attn, layer.mlp
        put(o + "attn_norm", layer.input_layernorm.weight, (D,))
        put(o + "wq", at.q_proj.weight, (H * hd, D))
        put(o + "wk", at.k_proj.weight, (KV * hd, D))
        put(o + "wv", at.v_proj.weight, (KV * hd, D))
        put(o + "wo", at.o_proj.weight, (D, H * hd))
        biases = [getattr(at, p).bias for p in ("q_proj", "k_proj", "v_proj")]
        if any(b is not None for b in biases):
            if not all(b is not None for b in biases):
                raise ExportError("model %s: layer %d has a bias on only some of q/k/v" % (name, l))
            put(o + "bq", biases[0], (H * hd,))
            put(o + "bk", biases[1], (KV * hd,))
            put(o + "bv", biases[2], (KV * hd,))
            qkv_bias = 1
        if getattr(at.o_proj, "bias", None) is not None:
            raise ExportError("model %s: o_proj bias is not supported" % name)
        put(o + "ffn_norm", layer.post_attention_layernorm.weight, (D,))
        put(o + "w_gate", mlp.gate_proj.weight, (ffn, D))
        put(o + "w_up", mlp.up_proj.weight, (ffn, D))
        put(o + "w_down", mlp.down_proj.weight, (D, ffn))
        e = getattr(layer.input_layernorm, "variance_epsilon", None)
        eps = e if eps is None else eps
    if eps is None:
        eps = float(getattr(cfg, "rms_norm_eps", 1e-6))
    t["rope_inv_freq"] = inv
    context = int(getattr(cfg, "max_position_embeddings", 0) or 0)
    if use_sw and sw:
        context = min(context, int(sw)) if context else int(sw)   # beyond it the model is not full attention
    attrs = {"arch": "llama", "source_format": "hf-" + mt, "model": str(name), "vocab_size": vocab,
             "d_model": D, "n_layers": L, "n_heads": H, "n_kv_heads": KV, "head_dim": hd, "ffn_hidden": ffn,
             "norm_eps": float(eps), "rope_style": "half", "rope_theta": float(theta) if theta else 0.0,
             "rope_scaling": json.dumps(scaling, sort_keys=True, default=str) if scaling else "none",
             "rope_attention_factor": att_factor, "rope_angle_precision": "float32",
             "softmax_scale": float(getattr(a0, "scaling", hd ** -0.5)), "tied_embeddings": int(tied),
             "qkv_bias": qkv_bias, "context": context}
    return attrs, t


# ---------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------

def write_weights(path, attrs, tensors):
    import h5py
    import numpy as np
    d = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ExportError("output %s is a directory" % path)
    if not os.path.isdir(d):
        raise ExportError("output folder %s does not exist" % d)
    for k, a in tensors.items():
        if not np.all(np.isfinite(a)):
            raise ExportError("tensor %s has non-finite values" % k)
    tmp = os.path.join(d, ".%s.tmp%d" % (os.path.basename(path), os.getpid()))
    try:
        try:
            f = h5py.File(tmp, "w")
        except OSError as e:
            m = re.search(r"error message = '([^']*)'", str(e))
            raise ExportError("cannot create output %s: %s" % (path, m.group(1) if m else _first_line(e)))
        with f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = VERSION
            for k, v in attrs.items():
                f.attrs[k] = v
            for k, a in sorted(tensors.items()):
                dt = np.float64 if k == "rope_inv_freq" else np.float32
                f.create_dataset(k, data=np.asarray(a, dtype=dt))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def export(model, output, hf_model=None):
    if hf_model is not None:
        attrs, t = load_hf(model, hf_model)
    elif is_native_model(model):
        attrs, t = load_native(model)
    elif os.path.isdir(model) and not os.path.isfile(os.path.join(model, "config.json")):
        raise ExportError("%s: unknown model type (neither model_config.json + model_part*.pt nor a "
                          "transformers config.json)" % model)
    elif os.path.isfile(model):
        raise ExportError("model %s is a file, not a model folder" % model)
    elif not os.path.exists(model) and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        raise ExportError("model %s: no such folder" % model)
    else:
        attrs, t = load_hf(model)
    write_weights(output, attrs, t)
    return attrs


def _sigterm(signum, frame):
    raise KeyboardInterrupt()


def main(argv=None):
    p = argparse.ArgumentParser(description="Export a model's weights for `kvsim decode` (models/WEIGHTS.md).")
    p.add_argument("--model", required=True, help="model folder (project format or transformers) or HF name")
    p.add_argument("-o", "--output", required=True, help="output .h5 file")
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        attrs = export(a.model, a.output)
    except ExportError as e:
        print("export_model: error: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("export_model: interrupted; no output written", file=sys.stderr)
        return 130
    print("wrote %s: %s, %d layers, d %d, %d heads / %d kv heads, head_dim %d, ffn %d, vocab %d, rope %s theta %g"
          % (a.output, attrs["model"], attrs["n_layers"], attrs["d_model"], attrs["n_heads"], attrs["n_kv_heads"],
             attrs["head_dim"], attrs["ffn_hidden"], attrs["vocab_size"], attrs["rope_style"], attrs["rope_theta"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
