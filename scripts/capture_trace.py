#!/usr/bin/python3
"""capture_trace.py -- capture a kvtrace v1 file from a real language model.

Contract
  capture_trace.py --model PATH_OR_HF_NAME (--text FILE | --tokens FILE)
                   --prefill N --decode S -o OUT.h5
                   [--dtype float16|float32] [--device cpu|cuda] [--offset K]

  One forward pass (float32, teacher forced) over the window of N+S tokens
  tokens[K : K+N+S] captures, for every layer, the post-RoPE keys and the
  values of all N+S positions and the queries of the S decode positions
  N .. N+S-1 (exactly what a generator that produced those S tokens would
  have computed).  The file follows ../shared/TRACE_FORMAT.md: k, v
  [n_kv_heads, N+S, d] chunked one head per chunk (gzip+shuffle), q and
  o_ref [S, n_heads, d], tokens int32 [N+S]; o_ref is computed in float64
  from the STORED (possibly float16-rounded) q, k, v.

  Prints `nll=<value>`: the model's mean negative log-likelihood (natural
  log, nats per token) of the S decode tokens, each predicted from its
  prefix: mean over p = N .. N+S-1 of -log P(tokens[p] | tokens[0 .. p-1]),
  i.e. the logits at positions N-1 .. N+S-2.  The same value is stored in
  the root attribute `nll_decode`; `nll_per_token` holds the mean over the
  whole window, p = 1 .. N+S-1 (as in the sample traces of ../shared/traces).

Model types
  * the project's own model format (a folder holding model_config.json and
    model_part*.pt, e.g. ../shared/models/pysrc-llama-12m): the forward pass
    is implemented here (RMSNorm, interleaved RoPE, GQA, SwiGLU, tied head);
    tokenizer.json in the folder is read by a byte-level BPE encoder
    implemented here (no `tokenizers` package needed).
  * Hugging Face transformers decoder models of the Llama family (Llama,
    Mistral, Qwen2, ...: q_proj/k_proj/v_proj + rotary): the library is not
    modified; a forward pre-hook on each layer's self_attn recomputes q, k, v
    from the module's own projections and the rotary (cos, sin) it is given.

Memory: one layer's tensors at a time are held for the file (each layer is
written as soon as it is computed); the model's own activations are those of
one forward pass without a KV cache.

Errors: bad input (missing file, unknown model type, window longer than the
text or the model's context, unwritable output, ...) -> one line
`capture_trace: error: ...` on stderr, exit status 2, no output file left
behind (the file is written under a temporary name and renamed at the end;
the temporary file is removed on any error and on Ctrl-C).
"""

import argparse
import json
import math
import os
import re
import signal
import sys
import unicodedata

CONTEXT_DEFAULT = 8192  # context of the project's model format when not in model_config.json


class CaptureError(Exception):
    """Bad input: reported as one line, exit status 2."""


# --------------------------------------------------------------------------
# Byte-level BPE tokenizer (GPT-2 style) read from a HF tokenizer.json
# --------------------------------------------------------------------------

def _bytes_to_unicode():
    """The GPT-2 byte -> printable character map (a bijection on 0..255)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    table = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


# Unicode White_Space property (what \s matches in the tokenizers' regex engine)
_WHITESPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | \
    {chr(c) for c in range(0x2000, 0x200B)}


def _is_space(c):
    return c in _WHITESPACE


def _is_letter(c):
    return unicodedata.category(c)[0] == "L"


def _is_number(c):
    return unicodedata.category(c)[0] == "N"


def _is_other(c):
    return not (_is_space(c) or _is_letter(c) or _is_number(c))


_CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")


def pretokenize(text):
    """Split text exactly as the GPT-2 byte-level pre-tokenizer regex does:
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
    (alternatives tried in order at each position, each greedy)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        # 1. contractions
        if c == "'":
            hit = None
            for suf in _CONTRACTIONS:
                if text.startswith(suf, i + 1):
                    hit = suf
                    break
            if hit is not None:
                out.append(text[i:i + 1 + len(hit)])
                i += 1 + len(hit)
                continue
        # 2.-4. ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' (in this order)
        run_cls = None
        for cls in (_is_letter, _is_number, _is_other):
            if c == " " and i + 1 < n and cls(text[i + 1]):
                run_cls, k = cls, i + 2
                break
            if cls(c):
                run_cls, k = cls, i + 1
                break
        if run_cls is not None:
            while k < n and run_cls(text[k]):
                k += 1
            out.append(text[i:k])
            i = k
            continue
        # 5./6. whitespace run
        k = i
        while k < n and _is_space(text[k]):
            k += 1
        if k == n or k - i == 1:
            out.append(text[i:k])          # \s+(?!\S) at end, or \s+ of length 1
            i = k
        else:
            out.append(text[i:k - 1])      # \s+(?!\S): leave the last space
            i = k - 1
    return out


class ByteLevelBPE:
    """Encoder/decoder for a HF `tokenizers` byte-level BPE tokenizer.json."""

    def __init__(self, path):
        try:
            with open(path, "r", encoding="utf-8") as fh:
                spec = json.load(fh)
        except (OSError, ValueError) as e:
            raise CaptureError("cannot read tokenizer %s: %s" % (path, e))
        model = spec.get("model") or {}
        pre = spec.get("pre_tokenizer") or {}
        if model.get("type") != "BPE" or pre.get("type") != "ByteLevel":
            raise CaptureError("tokenizer %s: only byte-level BPE tokenizers are supported "
                               "(model.type=%r, pre_tokenizer.type=%r)"
                               % (path, model.get("type"), pre.get("type")))
        if pre.get("add_prefix_space"):
            raise CaptureError("tokenizer %s: add_prefix_space=true is not supported" % path)
        self.vocab = dict(model["vocab"])
        self.id_to_tok = {i: t for t, i in self.vocab.items()}
        self.ranks = {}
        for r, m in enumerate(model["merges"]):
            a, b = m.split(" ", 1) if isinstance(m, str) else m
            self.ranks[(a, b)] = r
        self.special = {a["content"]: a["id"] for a in spec.get("added_tokens") or []}
        for a in spec.get("added_tokens") or []:
            self.id_to_tok[a["id"]] = a["content"]
        self.b2u = _bytes_to_unicode()
        self.u2b = {u: b for b, u in self.b2u.items()}
        self.cache = {}

    def _bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        syms = list(word)
        while len(syms) > 1:
            best, best_rank = None, None
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            a, b = syms[best], syms[best + 1]
            merged = []
            i = 0
            while i < len(syms):
                if i < len(syms) - 1 and syms[i] == a and syms[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(syms[i])
                    i += 1
            syms = merged
        ids = []
        for s in syms:
            if s not in self.vocab:
                raise CaptureError("tokenizer: symbol %r is not in the vocabulary" % s)
            ids.append(self.vocab[s])
        self.cache[word] = ids
        return ids

    def _encode_plain(self, text):
        ids = []
        for piece in pretokenize(text):
            word = "".join(self.b2u[b] for b in piece.encode("utf-8"))
            ids.extend(self._bpe(word))
        return ids

    def encode(self, text):
        """Text -> token ids; special tokens (e.g. <|eot|>) written literally
        in the text map to their ids, as the `tokenizers` library does."""
        ids = []
        rest = text
        while rest:
            first, first_tok = None, None
            for tok in self.special:
                p = rest.find(tok)
                if p >= 0 and (first is None or p < first):
                    first, first_tok = p, tok
            if first is None:
                ids.extend(self._encode_plain(rest))
                break
            ids.extend(self._encode_plain(rest[:first]))
            ids.append(self.special[first_tok])
            rest = rest[first + len(first_tok):]
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            tok = self.id_to_tok[int(i)]
            if tok in self.special:
                out.extend(tok.encode("utf-8"))
            else:
                out.extend(self.u2b[ch] for ch in tok)
        return out.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------
# Trace writer: streams one layer at a time into a temporary file
# --------------------------------------------------------------------------

def reference_output(q, k, v, prefill_len, scale):
    """o_ref[s, h] = softmax(scale * K[0..p] q[s,h]) V[0..p], p = T0 + s,
    in float64 from the given (stored) arrays.  q [S,H,d], k/v [KV,T,d]."""
    import numpy as np
    S, H, d = q.shape
    KV = k.shape[0]
    group = H // KV
    q64 = q.astype(np.float64)
    out = np.zeros((S, H, d), dtype=np.float64)
    pos = prefill_len + np.arange(S)
    T = prefill_len + S
    mask = np.arange(T)[None, :] > pos[:, None]          # [S, T] True = future
    for kh in range(KV):
        k64 = k[kh, :T].astype(np.float64)
        v64 = v[kh, :T].astype(np.float64)
        for h in range(kh * group, (kh + 1) * group):
            logits = scale * (q64[:, h, :] @ k64.T)        # [S, T]
            logits[mask] = -np.inf
            logits -= logits.max(axis=1, keepdims=True)
            w = np.exp(logits)
            w /= w.sum(axis=1, keepdims=True)
            out[:, h, :] = w @ v64
    return out


class TraceWriter:
    def __init__(self, path, attrs, tokens, dtype):
        import h5py
        import numpy as np
        self.np = np
        self.path = path
        d = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            raise CaptureError("output %s is a directory" % path)
        if not os.path.isdir(d):
            raise CaptureError("output folder %s does not exist" % d)
        self.tmp = os.path.join(d, ".%s.tmp%d" % (os.path.basename(path), os.getpid()))
        try:
            self.f = h5py.File(self.tmp, "w")
        except OSError as e:
            m = re.search(r"error message = '([^']*)'", str(e))   # HDF5's long message
            why = m.group(1) if m else (e.strerror or str(e).split(" (")[0])
            raise CaptureError("cannot create output %s: %s" % (path, why))
        self.dtype = np.float16 if dtype == "float16" else np.float32
        self.attrs = attrs
        self.layers_written = 0
        try:
            for key, val in attrs.items():
                self.f.attrs[key] = val
            self.f.create_dataset("tokens", data=np.asarray(tokens, dtype=np.int32))
        except BaseException:
            self.abort()
            raise

    def _store(self, a):
        """Round to the storage type; reject non-finite values."""
        np = self.np
        s = np.asarray(a, dtype=np.float32).astype(self.dtype)
        if not np.all(np.isfinite(s)):
            raise CaptureError("layer %d: non-finite value (overflow in %s?)"
                               % (self.layers_written, np.dtype(self.dtype).name))
        return s

    def write_layer(self, layer, q, k, v):
        """q [S,H,d], k/v [KV,T,d] as float32 numpy arrays."""
        assert layer == self.layers_written
        np = self.np
        qs, ks, vs = self._store(q), self._store(k), self._store(v)
        KV, T, d = ks.shape
        g = self.f.create_group("layer_%03d" % layer)
        chunks = (1, min(T, 1024), d)
        g.create_dataset("k", data=ks, chunks=chunks, compression="gzip", shuffle=True)
        g.create_dataset("v", data=vs, chunks=chunks, compression="gzip", shuffle=True)
        g.create_dataset("q", data=qs)
        o = reference_output(qs, ks, vs, self.attrs["prefill_len"], self.attrs["softmax_scale"])
        g.create_dataset("o_ref", data=o.astype(np.float32))
        self.f.flush()
        self.layers_written += 1

    def finish(self, extra_attrs):
        for key, val in extra_attrs.items():
            self.f.attrs[key] = val
        if self.layers_written != self.attrs["n_layers"]:
            raise CaptureError("internal: %d of %d layers written"
                               % (self.layers_written, self.attrs["n_layers"]))
        self.f.close()
        self.f = None
        try:
            os.replace(self.tmp, self.path)
        except OSError as e:
            raise CaptureError("cannot rename %s to %s: %s" % (self.tmp, self.path, e.strerror))
        self.tmp = None

    def abort(self):
        if getattr(self, "f", None) is not None:
            try:
                self.f.close()
            except Exception:
                pass
            self.f = None
        if getattr(self, "tmp", None) and os.path.exists(self.tmp):
            os.unlink(self.tmp)
        self.tmp = None


# --------------------------------------------------------------------------
# The project's own model format (pysrc-llama)
# --------------------------------------------------------------------------

def is_native_model(path):
    return (os.path.isdir(path) and os.path.isfile(os.path.join(path, "model_config.json"))
            and any(n.startswith("model_part") and n.endswith(".pt") for n in os.listdir(path)))


def token_logprobs(torch, head, hidden, ids, block=512):
    """log P(ids[p] | ids[0..p-1]) for p = 1 .. T-1 (float64 numpy [T-1]),
    from the final hidden states [T, D]; head maps hidden rows to logits.
    Computed in blocks of rows so that [T, vocab] logits never exist at once."""
    T = hidden.shape[0]
    out = []
    for r0 in range(0, T - 1, block):
        r1 = min(T - 1, r0 + block)
        lp = torch.log_softmax(head(hidden[r0:r1]).double(), dim=-1)
        out.append(lp.gather(1, ids[r0 + 1:r1 + 1, None])[:, 0].cpu())
    return torch.cat(out).numpy()


class NativeModel:
    """Decoder: x += Wo attn(RoPE(Wq n1 x), RoPE(Wk n1 x), Wv n1 x);
    x += W2 (silu(W1 n2 x) * W3 n2 x); logits = nf(x) emb^T.  float32."""

    kind = "native"

    def __init__(self, path, device):
        import torch
        self.torch = torch
        self.path = path
        self.name = os.path.basename(os.path.normpath(path))
        try:
            with open(os.path.join(path, "model_config.json")) as fh:
                cfg = json.load(fh)
            self.vocab = int(cfg["vocab"])
            self.d_model = int(cfg["d"])
            self.n_layers = int(cfg["layers"])
            self.n_heads = int(cfg["heads"])
            self.n_kv_heads = int(cfg["kv_heads"])
            self.head_dim = int(cfg["head_dim"])
            self.theta = float(cfg["theta"])
            self.context = int(cfg.get("context", CONTEXT_DEFAULT))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CaptureError("%s/model_config.json: %s" % (path, e))
        if self.n_heads % self.n_kv_heads or self.head_dim % 2:
            raise CaptureError("%s/model_config.json: heads %% kv_heads != 0 or odd head_dim" % path)
        parts = sorted(n for n in os.listdir(path) if n.startswith("model_part") and n.endswith(".pt"))
        sd = {}
        for p in parts:
            try:
                part = torch.load(os.path.join(path, p), map_location="cpu")
            except Exception as e:
                raise CaptureError("cannot load %s/%s: %s" % (path, p, e))
            sd.update(part)
        self.device = torch.device(device)
        need = ["emb.weight", "nf.weight"] + ["blocks.%d.%s.weight" % (l, w)
                                              for l in range(self.n_layers)
                                              for w in ("n1", "n2", "wq", "wk", "wv", "wo",
                                                        "w1", "w2", "w3")]
        missing = [k for k in need if k not in sd]
        if missing:
            raise CaptureError("%s: state dict lacks %s" % (path, ", ".join(missing[:3])))
        self.w = {k: sd[k].to(dtype=torch.float32, device=self.device) for k in need}
        if tuple(self.w["emb.weight"].shape) != (self.vocab, self.d_model):
            raise CaptureError("%s: emb.weight shape %s does not match the config"
                               % (path, tuple(self.w["emb.weight"].shape)))
        tok = os.path.join(path, "tokenizer.json")
        self.tokenizer_path = tok if os.path.isfile(tok) else None
        self.softmax_scale = 1.0 / math.sqrt(self.head_dim)
        self.eps = float(torch.finfo(torch.float32).eps)
        self.q_block = 512  # query rows per attention block in the forward pass

    def tokenizer(self):
        if self.tokenizer_path is None:
            raise CaptureError("%s has no tokenizer.json: use --tokens" % self.path)
        return ByteLevelBPE(self.tokenizer_path)

    def attrs(self):
        return {"rope_style": "interleaved", "rope_theta": self.theta, "model": self.name}

    def _rms(self, x, w):
        torch = self.torch
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def _rope(self, x, cos, sin):
        """x [T, heads, d]; rotate pairs (2i, 2i+1) by angle pos * theta^(-2i/d)."""
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = self.torch.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def run(self, tokens, n_decode, on_layer, attn_hook=None):
        """Forward over tokens (1-D int list).  Calls on_layer(l, q[S,H,d],
        k[KV,T,d], v[KV,T,d]) (float32 numpy) per layer as it is computed and
        attn_hook(l, attn[T,H,d] torch) with the attention output before Wo.
        Returns log P(tokens[p] | tokens[0..p-1]) for p = 1 .. T-1."""
        torch = self.torch
        w = self.w
        T = len(tokens)
        S = n_decode
        H, KV, d = self.n_heads, self.n_kv_heads, self.head_dim
        with torch.no_grad():
            ids = torch.tensor(tokens, dtype=torch.long, device=self.device)
            x = w["emb.weight"][ids]                                   # [T, D]
            i = torch.arange(0, d, 2, dtype=torch.float64, device=self.device)
            inv = self.theta ** (-i / d)
            ang = torch.arange(T, dtype=torch.float64, device=self.device)[:, None] * inv[None, :]
            cos = torch.cos(ang).to(torch.float32)[:, None, :]          # [T, 1, d/2]
            sin = torch.sin(ang).to(torch.float32)[:, None, :]
            for l in range(self.n_layers):
                p = "blocks.%d." % l
                h = self._rms(x, w[p + "n1.weight"])
                q = self._rope((h @ w[p + "wq.weight"].T).view(T, H, d), cos, sin)
                k = self._rope((h @ w[p + "wk.weight"].T).view(T, KV, d), cos, sin)
                v = (h @ w[p + "wv.weight"].T).view(T, KV, d)
                on_layer(l, q[T - S:].cpu().numpy(),
                         k.transpose(0, 1).contiguous().cpu().numpy(),
                         v.transpose(0, 1).contiguous().cpu().numpy())
                g = H // KV
                kk = k.repeat_interleave(g, dim=1).transpose(0, 1)       # [H, T, d]
                vv = v.repeat_interleave(g, dim=1).transpose(0, 1)
                qh = q.transpose(0, 1)                                     # [H, T, d]
                a = torch.empty(H, T, d, dtype=torch.float32, device=self.device)
                for r0 in range(0, T, self.q_block):                   # bounded memory
                    r1 = min(T, r0 + self.q_block)
                    att = (qh[:, r0:r1] @ kk[:, :r1].transpose(1, 2)) * self.softmax_scale
                    future = torch.arange(r1, device=self.device)[None, :] > \
                        torch.arange(r0, r1, device=self.device)[:, None]
                    att = att.masked_fill(future, float("-inf")).softmax(-1)
                    a[:, r0:r1] = att @ vv[:, :r1]
                    del att
                a = a.transpose(0, 1)                                   # [T, H, d]
                del kk, vv
                if attn_hook is not None:
                    attn_hook(l, a)
                x = x + a.reshape(T, H * d) @ w[p + "wo.weight"].T
                h = self._rms(x, w[p + "n2.weight"])
                f = torch.nn.functional.silu(h @ w[p + "w1.weight"].T) * (h @ w[p + "w3.weight"].T)
                x = x + f @ w[p + "w2.weight"].T
            return token_logprobs(torch, lambda h: self._rms(h, w["nf.weight"]) @ w["emb.weight"].T,
                                  x, ids)


# --------------------------------------------------------------------------
# Hugging Face transformers (Llama family)
# --------------------------------------------------------------------------

class HFModel:
    kind = "hf"

    def __init__(self, name, device):
        import torch
        self.torch = torch
        try:
            import transformers
        except ImportError:
            raise CaptureError("%s is not a kvsim model folder (model_config.json + model_part*.pt) "
                               "and the `transformers` package is not installed" % name)
        self.transformers = transformers
        try:
            cfg = transformers.AutoConfig.from_pretrained(name)
        except Exception as e:
            raise CaptureError("model %s: cannot load a transformers config: %s"
                               % (name, str(e).splitlines()[0] if str(e) else type(e).__name__))
        self.name = name
        self.device = torch.device(device)
        try:
            # default dtype (float32 in transformers 4.x, the checkpoint's in 5.x), then float32
            model = transformers.AutoModelForCausalLM.from_pretrained(name)
        except Exception as e:
            raise CaptureError("model %s: cannot load: %s"
                               % (name, str(e).splitlines()[0] if str(e) else type(e).__name__))
        model.to(device=self.device, dtype=torch.float32).eval()
        self.model = model
        base = model.base_model
        layers = getattr(base, "layers", None)
        if layers is None or not all(hasattr(L, "self_attn") for L in layers):
            raise CaptureError("model %s (%s): not a Llama-family decoder (no base_model.layers[i]"
                               ".self_attn)" % (name, cfg.model_type))
        self.base = base
        self.layers = layers
        a0 = layers[0].self_attn
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            if not hasattr(a0, proj):
                raise CaptureError("model %s (%s): attention has no %s: unsupported architecture"
                                   % (name, cfg.model_type, proj))
        self.cfg = cfg
        self.n_layers = len(layers)
        self.n_heads = int(cfg.num_attention_heads)
        self.n_kv_heads = int(getattr(cfg, "num_key_value_heads", None) or self.n_heads)
        self.head_dim = int(getattr(a0, "head_dim", None) or
                            getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads)
        self.softmax_scale = float(getattr(a0, "scaling", self.head_dim ** -0.5))
        self.vocab = int(cfg.vocab_size)
        self.context = int(getattr(cfg, "max_position_embeddings", 0) or 0) or None
        # sliding-window attention (Mistral, Qwen2 with use_sliding_window): the
        # trace's full causal attention equals the model's only within the window
        sw = getattr(cfg, "sliding_window", None)
        if sw and getattr(cfg, "use_sliding_window", True):
            self.context = min(self.context or int(sw), int(sw))
        mod = sys.modules[type(a0).__module__]
        self.apply_rope = getattr(mod, "apply_rotary_pos_emb", None)
        if self.apply_rope is None:
            raise CaptureError("model %s (%s): no apply_rotary_pos_emb in %s: unsupported"
                               % (name, cfg.model_type, mod.__name__))

    def tokenizer(self):
        try:
            tok = self.transformers.AutoTokenizer.from_pretrained(self.name)
        except Exception as e:
            raise CaptureError("model %s: cannot load its tokenizer (%s): use --tokens"
                               % (self.name, str(e).splitlines()[0] if str(e) else type(e).__name__))

        class _Tok:
            def encode(self, text):
                return tok(text, add_special_tokens=False)["input_ids"]

            def decode(self, ids):
                return tok.decode(ids)
        return _Tok()

    def attrs(self):
        a = {"rope_style": "half", "model": self.name}
        theta = getattr(self.cfg, "rope_theta", None)
        if theta is None:
            rp = getattr(self.cfg, "rope_parameters", None) or {}
            theta = rp.get("rope_theta") if isinstance(rp, dict) else None
        scaling = getattr(self.cfg, "rope_scaling", None)
        if theta is not None and not (scaling and scaling.get("rope_type", scaling.get("type"))
                                      not in (None, "default")):
            a["rope_theta"] = float(theta)
        return a

    def _qkv(self, attn, hidden, kwargs):
        """Recompute post-RoPE q, k and v exactly as the module does."""
        torch = self.torch
        B, T, _ = hidden.shape
        d = self.head_dim
        q = attn.q_proj(hidden).view(B, T, -1, d)
        k = attn.k_proj(hidden).view(B, T, -1, d)
        v = attn.v_proj(hidden).view(B, T, -1, d)
        if hasattr(attn, "q_norm"):      # Qwen3-style per-head norms before RoPE
            q = attn.q_norm(q)
            k = attn.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)   # [B, heads, T, d]
        pe = kwargs.get("position_embeddings")
        if pe is None:
            pos = kwargs.get("position_ids")
            if pos is None:
                pos = torch.arange(T, device=hidden.device)[None, :]
            if hasattr(attn, "rotary_emb"):
                pe = attn.rotary_emb(v, pos)
            else:
                pe = self.base.rotary_emb(v, pos)
        cos, sin = pe
        q, k = self.apply_rope(q, k, cos, sin)
        return q[0], k[0], v[0]

    def run(self, tokens, n_decode, on_layer, attn_hook=None):
        torch = self.torch
        T, S = len(tokens), n_decode
        hooks = []

        def make_pre(l):
            def pre(module, args, kwargs):
                hidden = kwargs.get("hidden_states", args[0] if args else None)
                q, k, v = self._qkv(module, hidden, kwargs)
                on_layer(l, q[:, T - S:].transpose(0, 1).float().cpu().numpy(),
                         k.float().cpu().numpy(), v.float().cpu().numpy())
            return pre

        def make_o(l):
            def pre(module, args):
                attn_hook(l, args[0][0].view(T, self.n_heads, self.head_dim))
            return pre

        for l, L in enumerate(self.layers):
            hooks.append(L.self_attn.register_forward_pre_hook(make_pre(l), with_kwargs=True))
            if attn_hook is not None:
                hooks.append(L.self_attn.o_proj.register_forward_pre_hook(make_o(l)))
        try:
            with torch.no_grad():
                ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
                out = self.base(input_ids=ids, use_cache=False)
                return token_logprobs(torch, self.model.get_output_embeddings(), out[0][0], ids[0])
        finally:
            for h in hooks:
                h.remove()


def load_model(name, device):
    """A folder of the project's format, a transformers folder, or a Hub name."""
    if is_native_model(name):
        return NativeModel(name, device)
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise CaptureError("%s: unknown model type (neither model_config.json + model_part*.pt "
                               "nor a transformers config.json)" % name)
    elif os.path.exists(name):
        raise CaptureError("model %s is a file, not a model folder" % name)
    elif name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise CaptureError("model %s: no such folder" % name)
    return HFModel(name, device)


# --------------------------------------------------------------------------
# Input and driver
# --------------------------------------------------------------------------

def read_tokens(path, vocab):
    try:
        with open(path, "r") as fh:
            words = fh.read().split()
    except OSError as e:
        raise CaptureError("cannot read %s: %s" % (path, e.strerror))
    toks = []
    for n, w in enumerate(words):
        try:
            t = int(w)
        except ValueError:
            raise CaptureError("%s: token %d (%r) is not an integer" % (path, n, w[:20]))
        if not 0 <= t < vocab:
            raise CaptureError("%s: token %d = %d outside the vocabulary [0, %d)" % (path, n, t, vocab))
        toks.append(t)
    return toks


def read_text(path):
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return fh.read()
    except OSError as e:
        raise CaptureError("cannot read %s: %s" % (path, e.strerror))
    except UnicodeDecodeError as e:
        raise CaptureError("%s: not UTF-8 text (%s); use --tokens for token ids" % (path, e.reason))


def capture(args, attn_hook=None, model=None):
    """Run one capture; returns (nll, model).  Raises CaptureError."""
    N, S, K = args.prefill, args.decode, args.offset
    if N < 1 or S < 1 or K < 0:
        raise CaptureError("need --prefill >= 1, --decode >= 1, --offset >= 0")
    src = args.text or args.tokens
    if not os.path.isfile(src):
        raise CaptureError("input %s: no such file" % src)
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise CaptureError("--device cuda: no CUDA device available to torch")
    if model is None:
        model = load_model(args.model, args.device)
    if args.text:
        tokens = model.tokenizer().encode(read_text(args.text))
        unit = "tokens of text"
    else:
        tokens = read_tokens(args.tokens, model.vocab)
        unit = "tokens"
    if K + N + S > len(tokens):
        raise CaptureError("%s has %d %s: offset %d + prefill %d + decode %d = %d is longer"
                           % (src, len(tokens), unit, K, N, S, K + N + S))
    if model.context is not None and N + S > model.context:
        raise CaptureError("prefill %d + decode %d = %d exceeds the model's context %d"
                           % (N, S, N + S, model.context))
    window = tokens[K:K + N + S]
    attrs = {"kvtrace_version": 1, "n_layers": model.n_layers, "n_heads": model.n_heads,
             "n_kv_heads": model.n_kv_heads, "head_dim": model.head_dim, "prefill_len": N,
             "n_decode": S, "softmax_scale": float(model.softmax_scale), "rope": "applied"}
    attrs.update(model.attrs())
    attrs["source"] = "captured: %s tokens %d..%d of %s (teacher-forced decode), %s" % (
        "text" if args.text else "token ids", K, K + N + S - 1, os.path.basename(src), args.dtype)
    writer = TraceWriter(args.output, attrs, window, args.dtype)
    try:
        logp = model.run(window, S, writer.write_layer, attn_hook=attn_hook)
        assert len(logp) == N + S - 1
        nll = float(-logp[N - 1:].mean())           # predictions of tokens N .. N+S-1
        writer.finish({"nll_decode": nll, "nll_per_token": float(-logp.mean())})
    except BaseException:
        writer.abort()
        raise
    return nll, model


def parse_args(argv):
    p = argparse.ArgumentParser(description="Capture a kvtrace v1 file from a language model.")
    p.add_argument("--model", required=True, help="model folder or Hugging Face name")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="UTF-8 text file, tokenised with the model's tokenizer")
    src.add_argument("--tokens", help="file of whitespace-separated token ids")
    p.add_argument("--prefill", type=int, required=True, help="prompt tokens N (T0)")
    p.add_argument("--decode", type=int, required=True, help="decode steps S")
    p.add_argument("-o", "--output", required=True, help="output .h5 file")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                   help="storage type of q, k, v (default float16)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--offset", type=int, default=0, help="tokens to skip first (default 0)")
    return p.parse_args(argv)


def _sigterm(signum, frame):
    """SIGTERM behaves like Ctrl-C: the temporary file is removed."""
    raise KeyboardInterrupt()


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        nll, model = capture(args)
    except CaptureError as e:
        print("capture_trace: error: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("capture_trace: interrupted; no output written", file=sys.stderr)
        return 130
    except MemoryError:
        print("capture_trace: error: out of memory (try a shorter window)", file=sys.stderr)
        return 2
    print("wrote %s: %d layers, %d heads / %d kv heads, d %d, prefill %d, decode %d, %s"
          % (args.output, model.n_layers, model.n_heads, model.n_kv_heads, model.head_dim,
             args.prefill, args.decode, args.dtype))
    print("nll=%.6f" % nll)
    return 0


if __name__ == "__main__":
    sys.exit(main())
